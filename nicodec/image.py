"""Reading images for encoding and writing decoded ones, with clear errors.

* Any format Pillow reads (PNG, JPEG, TIFF, WebP, BMP, ...); EXIF orientation is applied.
* Greyscale (L, I;16, 1, ...) is coded as RGB with equal channels and decoded back to
  8-bit greyscale (header ``channels = 1``).
* An alpha channel (RGBA, LA, palette transparency) is dropped: nicodec codes colour only;
  the caller is told so.
* Of an animation or a multi-page file (GIF, APNG, WebP, TIFF pages) the first frame is
  coded; the caller is told how many there were.
* Everything else (CMYK, YCbCr, palette) is converted to 8-bit RGB.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from nicodec.container import check_size
from nicodec.modelfile import atomic_write  # noqa: F401 (image.atomic_write)
from nicodec.errors import NicodecError

GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F", "La"}

# The working pixel limit (the format allows far more): memory grows by about 0.2 GB per
# megapixel on encode and decode, so larger images are refused with one clear line unless
# the user raises the limit (--max-pixels, or NICODEC_MAX_PIXELS).
DEFAULT_MAX_PIXELS = 40_000_000
_max_pixels: int | None = None

# Decoded images are written losslessly, in the format the output's extension names.
OUTPUT_FORMATS = {".png": ("PNG", {}), ".tif": ("TIFF", {"compression": "tiff_adobe_deflate"}),
                  ".tiff": ("TIFF", {"compression": "tiff_adobe_deflate"}),
                  ".webp": ("WEBP", {"lossless": True, "quality": 100, "method": 4}),
                  ".bmp": ("BMP", {})}
LOSSY = {".jpg", ".jpeg", ".jpe", ".jxl", ".avif", ".heic", ".heif", ".gif", ".jp2", ".j2k"}


def set_max_pixels(n: int | None) -> None:
    """Set the pixel limit for this process (None: NICODEC_MAX_PIXELS or the default)."""
    global _max_pixels
    if n is not None and n < 1:
        raise NicodecError(f"the pixel limit must be positive (got {n})")
    _max_pixels = n


def max_pixels() -> int:
    if _max_pixels is not None:
        return _max_pixels
    env = os.environ.get("NICODEC_MAX_PIXELS")
    try:
        return int(env) if env else DEFAULT_MAX_PIXELS
    except ValueError:
        raise NicodecError(f"NICODEC_MAX_PIXELS={env!r} is not a number") from None


def check_pixels(width: int, height: int) -> None:
    """Refuse an image over the pixel limit before any memory is spent on it."""
    limit = max_pixels()
    if width * height > limit:
        raise NicodecError(f"image of {width}x{height} ({width * height:,} pixels) is over "
                           f"the pixel limit of {limit:,} (about 0.2 GB of memory per "
                           "megapixel); raise it with --max-pixels or NICODEC_MAX_PIXELS")


def output_format(path: Path | str) -> tuple[str, dict]:
    """(Pillow format, options) for a decoded image's path; '-' (stdout) is PNG."""
    suffix = "" if str(path) == "-" else Path(path).suffix.lower()
    if str(path) == "-":
        return OUTPUT_FORMATS[".png"]
    if suffix in OUTPUT_FORMATS:
        return OUTPUT_FORMATS[suffix]
    what = "a lossy format" if suffix in LOSSY else "not a format nicodec writes"
    raise NicodecError(f"{path}: {suffix or 'no extension'} is {what}; decoded images are "
                       f"written losslessly as {', '.join(sorted(OUTPUT_FORMATS))}")


def encode_image(rgb: np.ndarray, channels: int, path: Path | str) -> bytes:
    """Decoded pixels as the bytes of the lossless format ``path`` names."""
    fmt, options = output_format(path)
    buf = io.BytesIO()
    to_pil(rgb, channels).save(buf, format=fmt, **options)
    return buf.getvalue()


@dataclass
class LoadedImage:
    rgb: np.ndarray  # (H, W, 3) uint8
    channels: int  # 1 = greyscale source, 3 = colour
    dropped_alpha: bool
    frames: int = 1  # frames or pages in the source; only the first is coded


def from_pil(im: Image.Image) -> LoadedImage:
    """Pixels of a Pillow image as nicodec codes them (EXIF orientation applied, greyscale
    kept as one channel, alpha dropped; of several frames, the first)."""
    check_size(*im.size)
    check_pixels(*im.size)
    frames = max(1, int(getattr(im, "n_frames", 1)))
    if frames > 1:
        im.seek(0)
    im = ImageOps.exif_transpose(im)
    mode = im.mode
    alpha = "A" in mode or (mode == "P" and "transparency" in im.info)
    if mode in GREY_MODES:
        if mode.startswith("I;16") or mode in ("I", "F"):
            a = np.asarray(im, dtype=np.float64)
            a = a / 257.0 if a.max() > 255 else a
            grey = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        else:
            grey = np.asarray(im.convert("L"))
        return LoadedImage(np.repeat(grey[:, :, None], 3, axis=2), 1, alpha, frames)
    return LoadedImage(np.asarray(im.convert("RGB")), 3, alpha, frames)


def from_array(a: np.ndarray) -> LoadedImage:
    """An (H, W) greyscale or (H, W, 3|4) colour uint8 array (a 4th channel, alpha, is
    dropped)."""
    a = np.asarray(a)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise NicodecError(f"an image array must be uint8 (H, W) or (H, W, 3|4), not "
                           f"{a.dtype} {a.shape}")
    check_size(a.shape[1], a.shape[0])
    check_pixels(a.shape[1], a.shape[0])
    if a.ndim == 2 or a.shape[2] == 1:
        grey = a.reshape(a.shape[0], a.shape[1])
        return LoadedImage(np.repeat(grey[:, :, None], 3, axis=2), 1, False)
    return LoadedImage(np.ascontiguousarray(a[:, :, :3]), 3, a.shape[2] == 4)


def load(path: str | Path) -> LoadedImage:
    path = Path(path)
    if not path.exists():
        raise NicodecError(f"{path}: no such file")
    if path.is_dir():
        raise NicodecError(f"{path}: is a directory, not an image")
    return _open(path, str(path))


def _open(fp, name: str) -> LoadedImage:
    saved = Image.MAX_IMAGE_PIXELS
    try:
        # Pillow's own bomb check follows nicodec's limit (its warning is ours: an error)
        Image.MAX_IMAGE_PIXELS = max_pixels()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fp) as im:
                return from_pil(im)
    except NicodecError as e:
        raise NicodecError(f"{name}: {e}") from None
    except Image.DecompressionBombError:
        raise NicodecError(f"{name}: the image is over the pixel limit of {max_pixels():,}; "
                           "raise it with --max-pixels or NICODEC_MAX_PIXELS") from None
    except UnidentifiedImageError as e:
        raise NicodecError(f"{name}: not an image nicodec can read ({e.__class__.__name__})") \
            from None
    except MemoryError:
        raise NicodecError(f"{name}: not enough memory to read the image") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise NicodecError(f"{name}: unreadable image ({e})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def to_pil(rgb: np.ndarray, channels: int) -> Image.Image:
    im = Image.fromarray(rgb, "RGB")
    return im.convert("L") if channels == 1 else im


def save_png(path: Path, rgb: np.ndarray, channels: int) -> None:
    buf = io.BytesIO()
    to_pil(rgb, channels).save(buf, format="PNG")
    atomic_write(path, buf.getvalue())


def load_bytes(data: bytes, name: str = "<stdin>") -> LoadedImage:
    """An image from its file bytes (as :func:`load` reads a path)."""
    return _open(io.BytesIO(data), name)
