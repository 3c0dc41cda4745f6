"""Reading images for encoding and writing decoded ones, with clear errors.

* Any format Pillow reads (PNG, JPEG, TIFF, WebP, BMP, ...); EXIF orientation is applied.
* Greyscale (L, I;16, 1, ...) is coded as RGB with equal channels and decoded back to
  8-bit greyscale (header ``channels = 1``).
* An alpha channel (RGBA, LA, palette transparency) is dropped: nicodec codes colour only;
  the caller is told so.
* Everything else (CMYK, YCbCr, palette) is converted to 8-bit RGB.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from nicodec.container import check_size
from nicodec.modelfile import atomic_write  # noqa: F401 (image.atomic_write)
from nicodec.errors import NicodecError

GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F", "La"}


@dataclass
class LoadedImage:
    rgb: np.ndarray  # (H, W, 3) uint8
    channels: int  # 1 = greyscale source, 3 = colour
    dropped_alpha: bool


def from_pil(im: Image.Image) -> LoadedImage:
    """Pixels of a Pillow image as nicodec codes them (EXIF orientation applied, greyscale
    kept as one channel, alpha dropped)."""
    check_size(*im.size)
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
        return LoadedImage(np.repeat(grey[:, :, None], 3, axis=2), 1, alpha)
    return LoadedImage(np.asarray(im.convert("RGB")), 3, alpha)


def from_array(a: np.ndarray) -> LoadedImage:
    """An (H, W) greyscale or (H, W, 3|4) colour uint8 array (a 4th channel, alpha, is
    dropped)."""
    a = np.asarray(a)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise NicodecError(f"an image array must be uint8 (H, W) or (H, W, 3|4), not "
                           f"{a.dtype} {a.shape}")
    check_size(a.shape[1], a.shape[0])
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
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                return from_pil(im)
    except NicodecError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise NicodecError(f"{path}: not an image nicodec can read ({e.__class__.__name__})") \
            from None
    except (OSError, ValueError, SyntaxError) as e:
        raise NicodecError(f"{path}: unreadable image ({e})") from None


def to_pil(rgb: np.ndarray, channels: int) -> Image.Image:
    im = Image.fromarray(rgb, "RGB")
    return im.convert("L") if channels == 1 else im


def save_png(path: Path, rgb: np.ndarray, channels: int) -> None:
    import io

    buf = io.BytesIO()
    to_pil(rgb, channels).save(buf, format="PNG")
    atomic_write(path, buf.getvalue())
