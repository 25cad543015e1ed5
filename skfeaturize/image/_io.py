"""Loading and validating one image sample; every error names the sample's index and the cause.

Accepted samples: a path (``str`` or ``os.PathLike``), raw encoded bytes, a PIL image, or a NumPy array
in HWC (or HW) layout with dtype uint8 (uint16 and bool are scaled). Every image becomes 8-bit RGB:

* EXIF orientation is applied;
* grayscale, palette, CMYK and 16-bit images are converted (16-bit by their real min..max range, so a
  12-bit image is not clipped to white);
* transparency is composited onto white;
* truncated files, empty files, zero-size images, non-regular files (directories, FIFOs), missing and
  unreadable files are errors. Pillow's decompression-bomb guard stays on.

Formats. Pillow recognises a file by its content and knows some forty formats, so a FITS file named
``.png`` would decode. Files and bytes are therefore opened with ``Image.open(..., formats=...)``
restricted to what :data:`FORMATS_BY_EXTENSION` gives for the file's extension (case-insensitive), and to
:data:`ACCEPTED_FORMATS` for bytes and for any other extension (or none). A multi-picture JPEG from a
camera (Pillow's ``MPO``) is opened by the JPEG plugin and so counts as JPEG.

Bounded work. Preprocessing resizes the *shorter* side, so a 1×30000 image resized to 168 becomes a
168×5 million intermediate (3.4 GB measured). Images whose long side exceeds :data:`MAX_ASPECT_RATIO`
times their short side are rejected (from the header, before any pixel is decoded); together with
Pillow's ``MAX_IMAGE_PIXELS`` this bounds the memory of every image.

Cache keys (:func:`content_key`): "same key" must imply "same RGB image out of :func:`load_image`".

* files and bytes: their encoded bytes (which hold the palette, EXIF, transparency), never the name, so a
  renamed file still hits; the header is checked against the name's allowed formats first, so a cache hit
  accepts exactly what a miss would decode;
* arrays: shape, dtype and bytes;
* PIL images: the RGB array :func:`load_image` makes of them. The alternative, hashing mode + size +
  pixels + palette + EXIF orientation + transparency, would have to list every input of the conversion
  (Pillow also reads the orientation from XMP, a palette can carry alpha, 16-bit scaling depends on the
  range) and would silently break the day the conversion reads one more; hashing its output is correct
  by construction, for about the cost of one copy of the image (a few ms for a megapixel).
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import threading

import numpy as np

from ..exceptions import InvalidSampleError

#: Formats accepted for bytes input and for files whose extension is not in FORMATS_BY_EXTENSION
#: (Pillow format ids: the common photo and raster formats; no FITS, EPS, PSD, ... parsers run).
ACCEPTED_FORMATS = ("PNG", "JPEG", "TIFF", "WEBP", "BMP", "GIF", "PPM")

#: The formats a file's (lower-cased) extension allows.
FORMATS_BY_EXTENSION = {
    ".png": ("PNG",), ".apng": ("PNG",),
    ".jpg": ("JPEG",), ".jpeg": ("JPEG",), ".jpe": ("JPEG",), ".jfif": ("JPEG",),
    ".tif": ("TIFF",), ".tiff": ("TIFF",),
    ".webp": ("WEBP",), ".bmp": ("BMP",), ".gif": ("GIF",),
    ".ppm": ("PPM",), ".pgm": ("PPM",), ".pbm": ("PPM",), ".pnm": ("PPM",),
}

#: Longest side / shortest side above which an image is rejected. Resizing the shorter side to S makes
#: an S × (S·ratio) intermediate: at 32:1 and S = 256 that is 2 million pixels (under 30 MB even as
#: float32), and a centre crop of such an image shows at most 1/32 of it anyway. Panoramas (≤ 10:1) pass.
#: Read at call time, in the process that decodes.
MAX_ASPECT_RATIO = 32

_TRUNCATED_LOCK = threading.Lock()
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


def describe(sample) -> str:
    if isinstance(sample, (str, os.PathLike)):
        return repr(os.fspath(sample))
    if isinstance(sample, (bytes, bytearray, memoryview)):
        return f"<{len(sample)} bytes>"
    if isinstance(sample, np.ndarray):
        return f"<array shape={sample.shape} dtype={sample.dtype}>"
    return f"<{type(sample).__name__}>"


def _err(index: int, sample, cause: str) -> InvalidSampleError:
    return InvalidSampleError(f"Sample {index} ({describe(sample)}): {cause}", index=index)


# -- reading ---------------------------------------------------------------------------------------------

def _os_cause(e: OSError) -> str:
    return f"{type(e).__name__}: {e.strerror or e}"


def _read_file(sample, index: int) -> bytes:
    path = os.fspath(sample)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block forever, a directory cannot decode
            raise _err(index, sample, "not a regular file")
        # O_NONBLOCK: if the path became a FIFO since the stat, the open returns and fstat rejects it.
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise _err(index, sample, "file not found") from None
    except OSError as e:
        raise _err(index, sample, f"cannot open file ({_os_cause(e)}); check that it is readable by this "
                                  "process") from e
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _err(index, sample, "not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    except OSError as e:
        raise _err(index, sample, f"cannot read file ({_os_cause(e)})") from e
    finally:
        os.close(fd)


def read_bytes(sample, index: int) -> bytes:
    """The encoded bytes of a path or bytes sample (checked: exists, regular file, readable, non-empty)."""
    if isinstance(sample, (bytes, bytearray, memoryview)):
        data = bytes(sample)
    else:
        data = _read_file(sample, index)
    if not data:
        raise _err(index, sample, "empty file (0 bytes)")
    return data


# -- formats ---------------------------------------------------------------------------------------------

def allowed_formats(sample) -> tuple[tuple[str, ...], str]:
    """The Pillow formats a path or bytes sample may decode as, and how to say so in an error."""
    if isinstance(sample, (str, os.PathLike)):
        ext = os.path.splitext(os.fsdecode(sample))[1].lower()
        if ext in FORMATS_BY_EXTENSION:
            formats = FORMATS_BY_EXTENSION[ext]
            return formats, f"the extension {ext!r} allows only {', '.join(formats)}"
    return ACCEPTED_FORMATS, f"accepted formats are {', '.join(ACCEPTED_FORMATS)}"


def _accepts(fmt: str, prefix: bytes) -> bool:
    """Pillow's own magic-number check of one format on a 16-byte header (no parser runs)."""
    from PIL import Image

    accept = Image.OPEN[fmt][1]
    try:
        return accept is not None and bool(accept(prefix))
    except Exception:  # noqa: BLE001 - a plugin's check failing means "not this format"
        return False


def _sniff(data: bytes) -> list[str]:
    """Every format whose Pillow plugin recognises this header."""
    from PIL import Image

    Image.init()
    return [fmt for fmt in Image.ID if _accepts(fmt, data[:16])]


def _unidentified(data: bytes, formats: tuple[str, ...], expected: str) -> str:
    """Why no allowed plugin opened the data: the format it really is, or not an image at all."""
    from PIL import Image

    found = _sniff(data)
    mine = [f for f in found if f in formats]
    if mine:  # the right format with a header its plugin cannot read: say what the plugin says
        try:
            Image.OPEN[mine[0]][0](io.BytesIO(data), "")
            cause = "unreadable header"
        except Exception as e:  # noqa: BLE001 - plugins raise many types for corrupt headers
            cause = str(e) or type(e).__name__
        return f"corrupt {mine[0]} data ({cause})"
    if found:
        return f"the content is {found[0]} but {expected}; {_fix(found[0], formats)}"
    return f"not an image (format not recognised); {expected}"


def _fix(real: str, formats: tuple[str, ...]) -> str:
    if len(formats) == 1 and real in ACCEPTED_FORMATS:  # an accepted format under the wrong extension
        ext = next(e for e, fs in FORMATS_BY_EXTENSION.items() if real in fs)
        return f"rename it to end in {ext!r}"
    return f"convert it to {formats[0]}" if len(formats) == 1 else "convert it to one of them"


def check_format(data: bytes, sample, index: int) -> None:
    """Reject, from the header alone, data that :func:`load_image` would refuse for its format."""
    from PIL import Image

    formats, expected = allowed_formats(sample)
    Image.preinit()  # the common plugins; all of them (slower, once) only when one is missing
    if any(f not in Image.OPEN for f in formats):
        Image.init()
    if not any(_accepts(f, data[:16]) for f in formats):
        raise _err(index, sample, "cannot decode image: " + _unidentified(data, formats, expected))


# -- decoding --------------------------------------------------------------------------------------------

def _check_size(img, index: int, sample) -> None:
    w, h = img.size
    if w == 0 or h == 0:
        raise _err(index, sample, f"zero-size image ({w}×{h})")
    if max(w, h) > MAX_ASPECT_RATIO * min(w, h):
        raise _err(index, sample,
                   f"image of {w}×{h} pixels has an aspect ratio of {max(w, h) / min(w, h):.0f}:1, above "
                   f"the limit of {MAX_ASPECT_RATIO}:1 (preprocessing resizes the shorter side, so it would "
                   "take gigabytes); crop it into tiles or pad it towards a square first")


def _decode_error(e: Exception, index: int, sample) -> InvalidSampleError:
    from PIL import Image

    if isinstance(e, Image.DecompressionBombError):
        return _err(index, sample, f"refused as a possible decompression bomb: {e}")
    cause = str(e) or type(e).__name__
    if "truncated" in cause.lower():
        cause = f"truncated image file ({cause})"
    return _err(index, sample, f"cannot decode image: {cause}")


def _load(img, index: int, sample):
    """Decode a PIL image's pixels; a truncated file fails even if other code set Pillow's global
    ``LOAD_TRUNCATED_IMAGES`` (restored afterwards)."""
    from PIL import ImageFile

    with _TRUNCATED_LOCK:
        saved = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            img.load()
        except Exception as e:  # noqa: BLE001 - Pillow raises many types for corrupt data
            raise _decode_error(e, index, sample) from e
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = saved
    return img


def _decode(data: bytes, index: int, sample):
    from PIL import Image, UnidentifiedImageError

    formats, expected = allowed_formats(sample)
    try:
        img = Image.open(io.BytesIO(data), formats=formats)
    except UnidentifiedImageError:  # its message is "cannot identify image file <_io.BytesIO ...>"
        raise _err(index, sample, "cannot decode image: " + _unidentified(data, formats, expected)) from None
    except Exception as e:  # noqa: BLE001 - Pillow raises many types for corrupt headers
        raise _decode_error(e, index, sample) from e
    _check_size(img, index, sample)  # from the header: nothing decoded yet
    return _load(img, index, sample)


def _array_to_pil(a: np.ndarray, index: int, sample):
    from PIL import Image

    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        raise _err(index, sample,
                   f"array of shape {a.shape} looks channels-first (C, H, W); skfeaturize expects "
                   "(H, W, C) or (H, W): pass np.moveaxis(a, 0, -1) (a stack of grayscale images is one "
                   "sample per image: pass list(a))")
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4))):
        hint = ""
        if a.ndim == 3:
            hint = (f"; if it is a stack of {a.shape[0]} grayscale images (N, H, W), pass one per "
                    "sample: list(a)")
        raise _err(index, sample, f"array of shape {a.shape} is not an image; expected (H, W), "
                                  f"(H, W, 1), (H, W, 3) or (H, W, 4){hint}")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16:
        a = _scale_to_uint8(a.astype(np.float32))
    elif a.dtype != np.uint8:
        raise _err(index, sample, f"array dtype {a.dtype} is not supported; pass uint8 (0..255), e.g. "
                                  "(a * 255).round().astype(np.uint8) for floats in [0, 1]")
    return Image.fromarray(np.ascontiguousarray(a))


def _scale_to_uint8(a: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(a)), float(np.max(a))
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.round((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def to_rgb(img, index: int, sample):
    """Any PIL image → 8-bit RGB, EXIF-oriented (size checked first)."""
    from PIL import Image, ImageOps

    _check_size(img, index, sample)
    with contextlib.suppress(Exception):  # a broken EXIF block must not lose the image
        img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        img = Image.fromarray(_scale_to_uint8(np.asarray(img, dtype=np.float32)))
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def load_image(sample, index: int):
    """Any accepted sample → an 8-bit RGB PIL image, or :class:`InvalidSampleError` naming ``index``."""
    from PIL import Image

    if sample is None or (isinstance(sample, float) and np.isnan(sample)):
        raise _err(index, sample, "missing value (None/NaN) instead of an image")
    if isinstance(sample, (str, os.PathLike, bytes, bytearray, memoryview)):
        img = _decode(read_bytes(sample, index), index, sample)
    elif isinstance(sample, Image.Image):
        _check_size(sample, index, sample)
        img = _load(sample, index, sample)  # a lazily opened image may still be truncated
    elif isinstance(sample, np.ndarray):
        img = _array_to_pil(sample, index, sample)
    else:
        raise _err(index, sample, f"unsupported sample type {type(sample).__name__}; pass a path, "
                                  "bytes, a PIL image or a uint8 HWC array")
    return to_rgb(img, index, sample)


def content_key(sample, index: int) -> str:
    """Cache key of a sample's content; equal keys mean equal :func:`load_image` output (see the module
    docstring): encoded bytes for files and bytes, shape + dtype + bytes for arrays, the decoded RGB
    pixels for PIL images."""
    from PIL import Image

    from ..cache._keys import hash_array, hash_bytes

    if isinstance(sample, (str, os.PathLike, bytes, bytearray, memoryview)):
        data = read_bytes(sample, index)
        check_format(data, sample, index)
        return hash_bytes(data)
    if isinstance(sample, np.ndarray):
        return hash_array(sample)
    if isinstance(sample, Image.Image):
        return hash_array(np.asarray(load_image(sample, index)), tag=b"pil-rgb")
    raise _err(index, sample, f"unsupported sample type {type(sample).__name__}; pass a path, "
                              "bytes, a PIL image or a uint8 HWC array")
