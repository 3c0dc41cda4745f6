"""Classic codecs through Pillow, as RD baselines, set up as their users run them.

* JPEG 2000 (OpenJPEG): irreversible 9/7 wavelet with the multiple-component transform
  (``mct=1``, RGB -> YCbCr), as ``opj_compress`` and every JPEG 2000 encoder apply it to RGB
  images; rate mode at a target bpp.
* JPEG (libjpeg via Pillow), optimised Huffman tables, in two chroma layouts: ``jpeg``
  4:2:0 (what cameras and most encoders write) and ``jpeg444`` (no chroma subsampling).
* WebP (libwebp, lossy): ``method=6``, the slowest and best of its speed/size trade-offs
  (``cwebp -m 6``).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

#: Each baseline's settings, for ``eval --help`` and ``docs/``.
SETTINGS = {
    "jpeg2000": "OpenJPEG, irreversible 9/7, mct=1 (RGB->YCbCr), rate mode at a target bpp",
    "jpeg": "libjpeg, 4:2:0 chroma subsampling, optimised Huffman tables, quality 5..95",
    "jpeg444": "libjpeg, 4:4:4 (no chroma subsampling), optimised Huffman tables, quality 5..95",
    "webp": "libwebp lossy, method 6 (slowest, best), quality 5..95",
}


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
                       irreversible=True, mct=1 if rgb.ndim == 3 else 0)


def jpeg(rgb: np.ndarray, quality: int) -> tuple[int, np.ndarray]:
    """JPEG with 4:2:0 chroma subsampling -> (bytes, decoded)."""
    return _round_trip(rgb, format="JPEG", quality=int(quality), subsampling="4:2:0",
                       optimize=True)


def jpeg444(rgb: np.ndarray, quality: int) -> tuple[int, np.ndarray]:
    """JPEG without chroma subsampling -> (bytes, decoded)."""
    return _round_trip(rgb, format="JPEG", quality=int(quality), subsampling="4:4:4",
                       optimize=True)


def webp(rgb: np.ndarray, quality: int) -> tuple[int, np.ndarray]:
    """Lossy WebP at its best method (6) -> (bytes, decoded)."""
    return _round_trip(rgb, format="WEBP", quality=int(quality), method=6)
