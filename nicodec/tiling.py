"""Bounded memory for large images: the transforms run over tiles of the latent grid.

Whole-image coding needs about 0.2 GB per megapixel (the activations of the first and last
layers). Above ``TILED_ABOVE`` pixels the encoder writes format version 2, whose decoder
runs the synthesis over tiles of ``TILE`` x ``TILE`` latents (1024 x 1024 pixels), each
with ``HALO`` latents of context on every side, keeping only the tile's own pixels:

* the synthesis' reach is under 3 latents (four 5x5 transposed convolutions of stride 2),
  so with a 4-latent halo each kept pixel sees exactly the latents it would see in the
  whole image; only the order of floating-point sums can differ (measured: PSNR of tiled
  against whole-image decoding in ``tests/test_tiling.py``);
* the analysis runs on the same tiles of the (edge-padded) image with a 64-pixel halo,
  more than its 61-pixel receptive field.

Memory is then bounded by one tile's activations plus the image itself (3 bytes per pixel)
and the integer latents. Smaller images keep the whole-image path and format version 1,
byte for byte, and version 1 files always decode whole, as every release has.
"""

from __future__ import annotations

import numpy as np
import torch

from nicodec.inference import DOWNSAMPLING

TILE = 64  # latents per tile side
HALO = 4  # latents of context around a tile
TILED_ABOVE = 4_000_000  # pixels: larger images are coded in tiles (format version 2)


def tiled(width: int, height: int) -> bool:
    """Whether an image of this size is encoded in tiles (format version 2)."""
    return width * height > TILED_ABOVE


def tiles(h: int, w: int):
    """(y0, y1, x0, x1) of each tile and (ey0, ey1, ex0, ex1) of it with its halo, on a
    latent grid of h x w."""
    for y0 in range(0, h, TILE):
        for x0 in range(0, w, TILE):
            y1, x1 = min(h, y0 + TILE), min(w, x0 + TILE)
            yield (y0, y1, x0, x1), (max(0, y0 - HALO), min(h, y1 + HALO),
                                     max(0, x0 - HALO), min(w, x1 + HALO))


def analysis(net, rgb: np.ndarray, device: str) -> torch.Tensor:
    """The analysis transform of an (H, W, 3) uint8 image, tile by tile: latents
    (1, C, ceil(H/16), ceil(W/16)) float32 on the CPU."""
    height, width = rgb.shape[:2]
    h, w = -(-height // DOWNSAMPLING), -(-width // DOWNSAMPLING)
    padded = np.pad(rgb, ((0, h * DOWNSAMPLING - height), (0, w * DOWNSAMPLING - width), (0, 0)),
                    mode="edge")  # as pixels_to_tensor's replicate padding
    out = None
    d = DOWNSAMPLING
    for (y0, y1, x0, x1), (ey0, ey1, ex0, ex1) in tiles(h, w):
        patch = np.ascontiguousarray(padded[d * ey0:d * ey1, d * ex0:d * ex1])
        x = torch.from_numpy(patch).to(device).permute(2, 0, 1)[None].float() / 255.0
        with torch.no_grad():
            y = net.analysis(x)
        if out is None:
            out = torch.empty((1, y.shape[1], h, w), dtype=torch.float32)
        out[..., y0:y1, x0:x1] = y[..., y0 - ey0:y1 - ey0, x0 - ex0:x1 - ex0].cpu()
    return out


def synthesis(net, y_hat: torch.Tensor, height: int, width: int, device: str) -> np.ndarray:
    """The synthesis transform of dequantized latents (1, C, h, w), tile by tile, to
    (height, width, 3) uint8 pixels (clamped and rounded as whole-image decoding does)."""
    _, _, h, w = y_hat.shape
    d = DOWNSAMPLING
    out = np.empty((h * d, w * d, 3), np.uint8)
    for (y0, y1, x0, x1), (ey0, ey1, ex0, ex1) in tiles(h, w):
        with torch.no_grad():
            x_hat = net.synthesis(y_hat[..., ey0:ey1, ex0:ex1].to(device))
        core = x_hat[0, :, d * (y0 - ey0):d * (y1 - ey0), d * (x0 - ex0):d * (x1 - ex0)]
        pixels = core.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0)
        out[d * y0:d * y1, d * x0:d * x1] = pixels.cpu().numpy()
    return out[:height, :width]
