"""Classic codecs through Pillow, as RD baselines: JPEG 2000 (OpenJPEG), JPEG, WebP."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def _round_trip(rgb: np.ndarray, **save_args) -> tuple[int, np.ndarray]:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, **save_args)
    n = buf.tell()
    buf.seek(0)
    with Image.open(buf) as im:
        return n, np.asarray(im.convert("RGB"))


def jpeg2000(rgb: np.ndarray, bpp: float) -> tuple[int, np.ndarray]:
    """OpenJPEG in rate mode at a target of ``bpp`` bits per pixel -> (bytes, decoded)."""
    ratio = max(1.0, 24.0 / bpp)  # compression ratio against 24-bit RGB
    return _round_trip(rgb, format="JPEG2000", quality_mode="rates", quality_layers=[ratio],
                       irreversible=True)


def jpeg(rgb: np.ndarray, quality: int) -> tuple[int, np.ndarray]:
    return _round_trip(rgb, format="JPEG", quality=int(quality))


def webp(rgb: np.ndarray, quality: int) -> tuple[int, np.ndarray]:
    return _round_trip(rgb, format="WEBP", quality=int(quality), method=4)
