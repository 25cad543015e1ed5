"""skfeaturize.image._io: one sample → 8-bit RGB, its cache key, and the errors that name the sample."""

from __future__ import annotations

import io
import itertools
import os
import shutil
import stat
import threading

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile, PngImagePlugin

from skfeaturize import ImageFeaturizer, InvalidSampleError
from skfeaturize.image import _io
from skfeaturize.image._io import content_key, load_image


def _rgb(sample, index=0) -> np.ndarray:
    return np.asarray(load_image(sample, index))


def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _landscape() -> np.ndarray:
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = 255  # left half white
    return a


def _palette_image(palette: list[int], **info) -> Image.Image:
    img = Image.fromarray((np.arange(48, dtype=np.uint8).reshape(6, 8) % 4), "P")
    img.putpalette(palette)
    img.info.update(info)
    return img


_XMP_ROTATE_90 = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
                  '22-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
                  'tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>')


def _fits_bytes() -> bytes:
    """A minimal valid 4×4 8-bit FITS file (Pillow reads FITS but cannot write it)."""
    cards = [("SIMPLE", "T"), ("BITPIX", "8"), ("NAXIS", "2"), ("NAXIS1", "4"), ("NAXIS2", "4")]
    header = "".join(f"{k:<8}= {v:>20}".ljust(80) for k, v in cards) + "END".ljust(80)
    header = header.ljust(2880).encode()
    return header + bytes(range(0, 256, 16)).ljust(2880, b"\0")


# -- 1. keys cover everything the decode step uses --------------------------------------------------------

def test_palette_is_part_of_the_key():
    p1 = _palette_image([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    p2 = _palette_image([9, 9, 9, 255, 255, 0, 0, 255, 255, 255, 0, 255])
    np.testing.assert_array_equal(np.asarray(p1), np.asarray(p2))  # same indices
    assert tuple(_rgb(p1)[0, 1]) == (255, 0, 0) and tuple(_rgb(p2)[0, 1]) == (255, 255, 0)
    assert content_key(p1, 0) != content_key(p2, 0)


def test_orientation_is_part_of_the_key(tmp_path):
    """Same pixel data, EXIF orientation 1 vs 6 vs an XMP orientation 6: the model sees rotated pixels."""
    img = Image.fromarray(_landscape())
    exif = img.getexif()
    exif[0x0112] = 6
    (tmp_path / "up.png").write_bytes(_png(img))
    (tmp_path / "exif.png").write_bytes(_png(img, exif=exif.tobytes()))
    xmp = PngImagePlugin.PngInfo()
    xmp.add_text("XML:com.adobe.xmp", _XMP_ROTATE_90)
    (tmp_path / "xmp.png").write_bytes(_png(img, pnginfo=xmp))
    pils = [Image.open(tmp_path / n) for n in ("up.png", "exif.png", "xmp.png")]
    for p in pils[1:]:
        np.testing.assert_array_equal(np.asarray(p), np.asarray(pils[0]))  # identical stored pixels
        assert _rgb(p).shape == (40, 20, 3) and _rgb(p)[:20].mean() > 200  # rotated: white half on top
    assert _rgb(pils[0]).shape == (20, 40, 3)
    assert content_key(pils[0], 0) != content_key(pils[1], 0)
    assert content_key(pils[0], 0) != content_key(pils[2], 0)
    assert content_key(pils[1], 0) == content_key(pils[2], 0)  # both decode to the same rotated image


def test_transparency_is_part_of_the_key():
    pal = [0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255]
    opaque, clear = _palette_image(pal), _palette_image(pal, transparency=1)
    assert tuple(_rgb(opaque)[0, 1]) == (255, 0, 0) and tuple(_rgb(clear)[0, 1]) == (255, 255, 255)
    assert content_key(opaque, 0) != content_key(clear, 0)
    rgba = np.zeros((6, 8, 4), np.uint8)
    rgba[..., 0] = 200
    half = rgba.copy()
    half[..., 3] = 128
    a, b = Image.fromarray(rgba, "RGBA"), Image.fromarray(half, "RGBA")
    assert not np.array_equal(_rgb(a), _rgb(b))
    assert content_key(a, 0) != content_key(b, 0)


def _sample_zoo(tmp_path) -> list:
    """Files, bytes, PIL images of many modes and arrays; several decode to the same RGB image."""
    base = _landscape()
    base[5:9, 30:35] = (10, 200, 90)
    gray = base[..., 1].copy()
    (tmp_path / "a.png").write_bytes(_png(Image.fromarray(base)))
    shutil.copy(tmp_path / "a.png", tmp_path / "renamed.png")
    Image.fromarray(base).save(tmp_path / "a.jpg", quality=90)
    rot = Image.fromarray(base)
    exif = rot.getexif()
    exif[0x0112] = 3
    pal = [0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255]
    return [
        str(tmp_path / "a.png"), str(tmp_path / "renamed.png"), (tmp_path / "a.png").read_bytes(),
        str(tmp_path / "a.jpg"), _png(rot, exif=exif.tobytes()),
        Image.fromarray(base), Image.fromarray(base).convert("RGBA"), Image.fromarray(base).convert("P"),
        Image.open(io.BytesIO(_png(rot, exif=exif.tobytes()))),
        Image.fromarray(gray), Image.fromarray(gray).convert("RGB"), Image.fromarray(gray).convert("LA"),
        Image.fromarray(base).convert("CMYK"), Image.fromarray(gray).convert("1"),
        Image.fromarray(gray.astype(np.uint16) * 16), Image.fromarray(gray.astype(np.uint16) * 4),
        _palette_image(pal), _palette_image(pal[::-1]), _palette_image(pal, transparency=2),
        base, gray, gray[..., None], gray.astype(np.uint16) * 16, gray > 100,
        np.dstack([base, np.full(gray.shape, 255, np.uint8)]), np.dstack([base, gray]),
    ]


def test_equal_keys_mean_equal_decoded_images(tmp_path):
    zoo = _sample_zoo(tmp_path)
    keys = [content_key(s, i) for i, s in enumerate(zoo)]
    images = [_rgb(s, i) for i, s in enumerate(zoo)]
    same_key = 0
    for i, j in itertools.combinations(range(len(zoo)), 2):
        equal_images = images[i].shape == images[j].shape and np.array_equal(images[i], images[j])
        if keys[i] == keys[j]:
            same_key += 1
            assert equal_images, (i, j)
        if not equal_images:
            assert keys[i] != keys[j], (i, j)
    # Not vacuous: the file, its renamed copy and its bytes; RGB, opaque RGBA and CMYK PIL images of one
    # picture; a gray picture as L, RGB, opaque LA and two 16-bit scalings of it.
    groups = sorted(sorted(i for i, k in enumerate(keys) if k == key) for key in set(keys))
    assert [g for g in groups if len(g) > 1] == [[0, 1, 2], [5, 6, 12], [9, 10, 11, 14, 15]]
    assert same_key == 3 + 3 + 10


def test_renamed_file_and_bytes_hit_the_same_key(tmp_path, small_images):
    (tmp_path / "x.png").write_bytes(_png(Image.fromarray(small_images[0])))
    shutil.copy(tmp_path / "x.png", tmp_path / "copy of x.PNG")
    k = content_key(str(tmp_path / "x.png"), 0)
    assert content_key(tmp_path / "copy of x.PNG", 0) == k
    assert content_key((tmp_path / "x.png").read_bytes(), 0) == k


def test_array_keys_cover_shape_and_dtype():
    a = np.arange(24, dtype=np.uint8).reshape(4, 6)
    assert content_key(a, 0) != content_key(a.reshape(6, 4), 0)
    assert content_key(a, 0) != content_key(a.astype(np.uint16), 0)
    assert content_key(a, 0) == content_key(a.copy(), 0)


# -- 2. formats restricted by extension and a documented list ---------------------------------------------

def test_fits_named_png_is_rejected(tmp_path):
    path = tmp_path / "fake.png"
    path.write_bytes(_fits_bytes())
    assert Image.open(path).format == "FITS"  # what Pillow alone would decode
    msg = r"Sample 3 \('.*fake.png'\): cannot decode image: the content is FITS but the extension '.png' " \
          r"allows only PNG; convert it to PNG$"
    with pytest.raises(InvalidSampleError, match=msg) as info:
        load_image(str(path), 3)
    assert info.value.index == 3
    with pytest.raises(InvalidSampleError, match=msg):  # a cache hit cannot accept what a miss refuses
        content_key(str(path), 3)
    accepted = r"accepted formats are PNG, JPEG, TIFF, WEBP, BMP, GIF, PPM; convert it to one of them$"
    with pytest.raises(InvalidSampleError, match=r"Sample 0 \(<5760 bytes>\): .*content is FITS but " +
                       accepted):
        load_image(_fits_bytes(), 0)
    (tmp_path / "real.fits").write_bytes(_fits_bytes())  # an extension not in the table: the list applies
    with pytest.raises(InvalidSampleError, match=r"real.fits'\): .*content is FITS but " + accepted):
        load_image(str(tmp_path / "real.fits"), 0)


def test_accepted_format_under_the_wrong_extension_says_rename(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(_png(Image.new("RGB", (8, 8))))
    with pytest.raises(InvalidSampleError, match=r"Sample 0 .*photo.jpg'\): cannot decode image: the content "
                                                 r"is PNG but the extension '.jpg' allows only JPEG; rename "
                                                 r"it to end in '.png'$"):
        load_image(str(path), 0)


def test_non_image_says_format_not_recognised(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello, not an image")
    with pytest.raises(InvalidSampleError) as info:
        load_image(str(path), 2)
    assert str(info.value) == (f"Sample 2 ({str(path)!r}): cannot decode image: not an image (format not "
                               "recognised); the extension '.png' allows only PNG")
    with pytest.raises(InvalidSampleError) as info:
        load_image(b"hello, not an image", 2)
    assert str(info.value) == ("Sample 2 (<19 bytes>): cannot decode image: not an image (format not "
                               "recognised); accepted formats are PNG, JPEG, TIFF, WEBP, BMP, GIF, PPM")
    assert "BytesIO" not in str(info.value)


def test_corrupt_header_of_the_right_format_says_corrupt(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + b"\xff" * 30)
    with pytest.raises(InvalidSampleError, match=r"Sample 0 .*broken.png'\): cannot decode image: "):
        load_image(str(path), 0)


def _save_as(img: Image.Image, path, ext: str) -> None:
    kw = {".webp": {"lossless": True}, ".jpg": {"quality": 95}, ".jpeg": {"quality": 95}}
    img.save(path, **kw.get(ext, {}))


@pytest.mark.parametrize("ext", sorted(_io.FORMATS_BY_EXTENSION))
def test_every_listed_extension_decodes_its_format(tmp_path, ext):
    fmt = _io.FORMATS_BY_EXTENSION[ext][0]
    a = np.zeros((12, 16, 3), np.uint8)
    a[:6] = (255, 255, 255)  # two colours: exact through GIF's palette and PBM's 1 bit
    img = {".pgm": Image.fromarray(a).convert("L"), ".pbm": Image.fromarray(a).convert("1")}.get(
        ext, Image.fromarray(a))
    path = tmp_path / f"img{ext.upper()}"  # extensions match case-insensitively
    _save_as(img, path, ext.lower() if ext not in (".jpe", ".jfif") else ".jpg")
    assert Image.open(path).format in (fmt, "MPO")
    tol = 3 if fmt == "JPEG" else 0
    assert np.abs(_rgb(str(path)).astype(int) - a).max() <= tol
    assert np.abs(_rgb(path.read_bytes()).astype(int) - a).max() <= tol  # bytes: the accepted list


def test_camera_multi_picture_jpeg_counts_as_jpeg(tmp_path):
    path = tmp_path / "phone.jpg"
    Image.new("RGB", (16, 16), (200, 10, 10)).save(path, format="MPO", save_all=True,
                                                 append_images=[Image.new("RGB", (16, 16))])
    assert Image.open(path).format == "MPO"
    assert np.abs(_rgb(str(path)).astype(int) - (200, 10, 10)).max() <= 3


def test_unknown_or_missing_extension_uses_the_accepted_list(tmp_path):
    for name in ("scan_0001", "scan.img"):
        (tmp_path / name).write_bytes(_png(Image.new("RGB", (5, 4), (1, 2, 3))))
        assert tuple(_rgb(str(tmp_path / name))[0, 0]) == (1, 2, 3)


# -- 3. bounded work per image ---------------------------------------------------------------------------

def test_extreme_aspect_ratio_is_rejected_from_the_header(tmp_path):
    data = _png(Image.new("RGB", (1, 30000), (90, 120, 200)))
    path = tmp_path / "tall.png"
    # The pixel data is cut off: decoding would fail as truncated, so the aspect error proves that
    # nothing was decoded (the header alone decided).
    path.write_bytes(data[: len(data) // 2])
    msg = (r"^Sample 7 \('.*tall.png'\): image of 1×30000 pixels has an aspect ratio of 30000:1, above the "
           r"limit of 32:1 \(preprocessing resizes the shorter side, so it would take gigabytes\); crop it "
           r"into tiles or pad it towards a square first$")
    with pytest.raises(InvalidSampleError, match=msg):
        load_image(str(path), 7)
    with pytest.raises(InvalidSampleError, match=r"Sample 0 \(<Image>\): image of 30000×1 pixels"):
        load_image(Image.new("RGB", (30000, 1)), 0)
    with pytest.raises(InvalidSampleError, match=r"Sample 0 \(<array .*\): image of 100×2 pixels"):
        load_image(np.zeros((2, 100), np.uint8), 0)


def test_aspect_ratio_limit_is_inclusive_and_read_at_call_time(monkeypatch):
    assert load_image(Image.new("RGB", (1, 32)), 0).size == (1, 32)
    with pytest.raises(InvalidSampleError, match="1×33 pixels has an aspect ratio of 33:1"):
        load_image(Image.new("RGB", (1, 33)), 0)
    monkeypatch.setattr(_io, "MAX_ASPECT_RATIO", 40)
    assert load_image(Image.new("RGB", (1, 33)), 0).size == (1, 33)


def test_featurizer_rejects_the_long_strip_before_preprocessing(tmp_path):
    path = tmp_path / "tall.png"
    path.write_bytes(_png(Image.new("RGB", (1, 30000), (90, 120, 200))))
    calls = []

    def preprocess(img):  # fit probes it once with a dummy 256×256 image to learn the input shape
        if img.size != (256, 256):
            calls.append(img.size)
            raise AssertionError("preprocessing must not run")
        return torch.zeros(3, 32, 32)

    f = ImageFeaturizer("timm:test_resnet", weights=None, preprocess=preprocess).fit([])
    with pytest.raises(InvalidSampleError, match=r"Sample 0 .*tall.png'\): image of 1×30000 pixels") as info:
        f.transform([str(path)])
    assert info.value.index == 0 and calls == []


# -- 4. unreadable files ---------------------------------------------------------------------------------

def test_permission_denied_names_the_sample(tmp_path, monkeypatch):
    path = tmp_path / "secret.png"
    path.write_bytes(_png(Image.new("RGB", (4, 4))))
    real_open = os.open

    def deny(p, *args, **kw):  # root ignores permission bits, so the refusal is simulated at the seam
        if os.fspath(p) == str(path):
            raise PermissionError(13, "Permission denied", os.fspath(p))
        return real_open(p, *args, **kw)

    monkeypatch.setattr(os, "open", deny)
    msg = (r"^Sample 4 \('.*secret.png'\): cannot open file \(PermissionError: Permission denied\); check "
           r"that it is readable by this process$")
    for fn in (load_image, content_key):
        with pytest.raises(InvalidSampleError, match=msg) as info:
            fn(str(path), 4)
        assert info.value.index == 4 and isinstance(info.value.__cause__, PermissionError)


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="needs Linux /proc")
def test_read_error_names_the_sample():
    # /proc/self/mem is a regular file whose read at offset 0 fails with EIO: a real I/O error
    assert stat.S_ISREG(os.stat("/proc/self/mem").st_mode)
    with pytest.raises(InvalidSampleError, match=r"^Sample 1 \('/proc/self/mem'\): cannot read file "
                                                 r"\(OSError: Input/output error\)$"):
        load_image("/proc/self/mem", 1)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX only")
def test_path_swapped_for_a_fifo_after_the_stat_does_not_block(tmp_path, monkeypatch):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    regular = os.stat(__file__)
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: regular if os.fspath(p) == str(fifo)
                        else real_stat(p, *a, **k))
    errors = []
    worker = threading.Thread(target=lambda: errors.append(pytest.raises(InvalidSampleError, load_image,
                                                                         str(fifo), 0)), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "opening the FIFO blocked"
    assert str(errors[0].value) == f"Sample 0 ({str(fifo)!r}): not a regular file"


# -- 5. grayscale arrays ----------------------------------------------------------------------------------

def test_hw_and_hw1_arrays_give_the_same_image():
    gray = (np.arange(30 * 40) % 251).astype(np.uint8).reshape(30, 40)
    a, b = _rgb(gray), _rgb(gray[..., None])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, np.repeat(gray[..., None], 3, axis=2))
    np.testing.assert_array_equal(a, _rgb(Image.fromarray(gray, "L")))


def test_grayscale_stack_as_one_sample_says_how_to_pass_it():
    with pytest.raises(InvalidSampleError) as info:
        load_image(np.zeros((5, 32, 32), np.uint8), 2)
    assert str(info.value) == (
        "Sample 2 (<array shape=(5, 32, 32) dtype=uint8>): array of shape (5, 32, 32) is not an image; "
        "expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); if it is a stack of 5 grayscale images "
        "(N, H, W), pass one per sample: list(a)")
    with pytest.raises(InvalidSampleError, match=r"looks channels-first .*np.moveaxis\(a, 0, -1\) \(a "
                                                 r"stack of grayscale images is one sample per image: pass "
                                                 r"list\(a\)\)"):
        load_image(np.zeros((3, 32, 32), np.uint8), 2)


# -- 6. kept behaviours that the new code paths touch -------------------------------------------------------

def test_truncated_pil_sample_fails_even_if_pillow_global_is_set(tmp_path, monkeypatch, small_images):
    data = _png(Image.fromarray(small_images[0]))
    path = tmp_path / "t.png"
    path.write_bytes(data[: len(data) // 2])  # the header is whole: Image.open succeeds, load() would not
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    for fn in (load_image, content_key):
        with pytest.raises(InvalidSampleError, match=r"Sample 6 \(<PngImageFile>\): cannot decode image: "
                                                     r"truncated image file"):
            fn(Image.open(path), 6)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the user's global is restored
