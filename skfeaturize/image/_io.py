"""Loading and validating one image sample; every error names the sample's index and the cause.

Accepted samples: a path (``str`` or ``os.PathLike``), raw encoded bytes, a PIL image, or a NumPy array
in HWC (or HW) layout with dtype uint8 (uint16 and bool are scaled). Every image becomes 8-bit RGB:

* EXIF orientation is applied;
* grayscale, palette, CMYK and 16-bit images are converted (16-bit by their real min..max range, so a
  12-bit image is not clipped to white);
* transparency is composited onto white;
* truncated files, empty files, zero-size images, non-regular files (directories, FIFOs) and missing
  files are errors. Pillow's decompression-bomb guard stays on.
"""

from __future__ import annotations

import io
import os
import stat
import threading

import numpy as np

from ..exceptions import InvalidSampleError

_TRUNCATED_LOCK = threading.Lock()


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


def read_bytes(sample, index: int) -> bytes:
    """The encoded bytes of a path or bytes sample (checked: exists, regular file, non-empty)."""
    if isinstance(sample, (bytes, bytearray, memoryview)):
        data = bytes(sample)
    else:
        path = os.fspath(sample)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise _err(index, sample, "file not found") from None
        except OSError as e:
            raise _err(index, sample, f"cannot access file: {e}") from e
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block forever, a directory cannot decode
            raise _err(index, sample, "not a regular file")
        with open(path, "rb") as f:
            data = f.read()
    if not data:
        raise _err(index, sample, "empty file (0 bytes)")
    return data


def _decode(data: bytes, index: int, sample):
    from PIL import Image, ImageFile

    try:
        # Truncated files must fail even if other code set Pillow's global LOAD_TRUNCATED_IMAGES.
        with _TRUNCATED_LOCK:
            saved = ImageFile.LOAD_TRUNCATED_IMAGES
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            try:
                img = Image.open(io.BytesIO(data))
                img.load()
            finally:
                ImageFile.LOAD_TRUNCATED_IMAGES = saved
    except Image.DecompressionBombError as e:
        raise _err(index, sample, f"refused as a possible decompression bomb: {e}") from e
    except Exception as e:  # noqa: BLE001 - Pillow raises many types for corrupt data
        cause = str(e) or type(e).__name__
        if "truncated" in cause.lower():
            cause = f"truncated image file ({cause})"
        raise _err(index, sample, f"cannot decode image: {cause}") from e
    return img


def _array_to_pil(a: np.ndarray, index: int, sample):
    from PIL import Image

    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        raise _err(index, sample,
                   f"array of shape {a.shape} looks channels-first (C, H, W); skfeaturize expects "
                   "(H, W, C) or (H, W): pass np.moveaxis(a, 0, -1)")
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4))):
        raise _err(index, sample, f"array of shape {a.shape} is not an image; expected (H, W), "
                                  "(H, W, 1), (H, W, 3) or (H, W, 4)")
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
    """Any PIL image → 8-bit RGB, EXIF-oriented."""
    from PIL import Image, ImageOps

    if img.width == 0 or img.height == 0:
        raise _err(index, sample, f"zero-size image ({img.width}×{img.height})")
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose the image
        pass
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
        img = sample
    elif isinstance(sample, np.ndarray):
        img = _array_to_pil(sample, index, sample)
    else:
        raise _err(index, sample, f"unsupported sample type {type(sample).__name__}; pass a path, "
                                  "bytes, a PIL image or a uint8 HWC array")
    return to_rgb(img, index, sample)


def content_key(sample, index: int) -> str:
    """Cache key of a sample's content: encoded bytes for files, pixel data for arrays and PIL images."""
    from PIL import Image

    from ..cache._keys import hash_array, hash_bytes

    if isinstance(sample, (str, os.PathLike, bytes, bytearray, memoryview)):
        return hash_bytes(read_bytes(sample, index))
    if isinstance(sample, np.ndarray):
        return hash_array(sample)
    if isinstance(sample, Image.Image):
        return hash_array(np.asarray(sample), tag=f"pil:{sample.mode}".encode())
    raise _err(index, sample, f"unsupported sample type {type(sample).__name__}")
