"""The encoder's choice of a quantisation step per image (format version 3).

Every codec rounds its latents on the unit grid, ``q = round(y - median)``: the one step
its lambda was trained at, for every image alike. But the base models were trained on the
mean PSNR of their crops (``--distortion psnr``: the crops' geometric-mean MSE), and one
grid does not give every image the same exchange of bits for decibels: a flat, foggy photo
reaches 40 dB at q1 on a few hundredths of a bit per pixel and gains a decibel for a few
more, where a busy one pays ten times as much for that decibel. A hyperprior model can code
its latents on any grid of step ``step_size(e) = step_ratio() ** -e`` (its Gaussians move by
``e`` scale levels, :mod:`nicodec.hyperprior`), so the encoder may give each image its own:

    e* = argmax_e  PSNR(e) - step_slope * bpp(e)

where ``step_slope`` (dB per bpp, in the manifest) is the slope of the model's own mean
curve over training photos between the grids ``e = -2`` and ``e = 2`` (:func:`slope`).
Every image then sits where one more bit buys the same mean PSNR as anywhere else in a
collection: the mean curve the paper's and our tables report, at effort-1 cost times the
few grids tried. ``PSNR`` is that of the pixels the decoder writes and ``bpp`` the ideal
code length under the frozen tables, side information included.

The grid is searched from ``e = 0`` in strides of 2 in the direction that improves the
score, then one either side of the best; e stays within ``SEARCH``. Each grid tried costs
a synthesis and the tables' bits (about 0.3 s for a 768 x 480 photo on 2 cores: the search
makes effort 1 about 8x slower). An image over ``SAMPLE_SIDE`` squared pixels is scored on
about ``SAMPLE_TILES`` tiles spread over it (:class:`TileSample`), so that the choice
costs a few seconds whatever the size: each tile is analysed with a halo of the image
around it and only its own latents and pixels count, which estimates the whole image's
rate and PSNR where its central crop (0.18-0.20) or a mosaic of tiles (whose seams cost
bits) did not. Files on the unit grid stay format version 1 or 2 (every release reads
them); others are version 3.
"""

from __future__ import annotations

import numpy as np
import torch

from nicodec import metrics

SEARCH = (-8, 12)  # the exponents the search may pick (the format allows +-MAX_STEP)
SAMPLE_SIDE = 1024  # pixels: a larger image chooses its grid on a TileSample ...
SAMPLE_TILE = 256  # pixels: or on about SAMPLE_TILES tiles this size spread over it ...
SAMPLE_TILES = 16
SAMPLE_HALO = 64  # ... each seen with this much of the image around it (one z cell)
SYNTHESIS_MARGIN = 2  # latents: what a tile's pixels depend on beyond its own (measured:
#                       at 2 they match the whole crop's synthesis but for 1 in 10^5)
SLOPE_IMAGES = 32  # adapt measures an adapter's slope on this many of its training images,
SLOPE_SIDE = 512  # each cut to its central crop of at most this side


def central_crop(rgb: np.ndarray, side: int) -> np.ndarray:
    """The central ``side`` x ``side`` pixels of ``rgb`` (all of a side that is shorter),
    its corner on the 16-pixel grid of the latents."""
    h, w = rgb.shape[:2]
    top, left = max(0, (h - side) // 32 * 16), max(0, (w - side) // 32 * 16)
    return rgb[top:top + side, left:left + side]


def point(codec, r: torch.Tensor, rgb: np.ndarray, e: int) -> tuple[float, float, np.ndarray]:
    """(bpp, PSNR, q) of the residuals ``r = y - median`` of ``rgb`` coded on grid e: the
    tables' ideal bits (side information included) and the pixels the decoder writes."""
    from nicodec.codec import quantize

    h, w = rgb.shape[:2]
    q = quantize(r, e)[0].to(torch.int32).cpu().numpy()
    bpp = codec.coder.ideal_bits(q, e) / (h * w)
    return bpp, metrics.psnr(rgb, codec.reconstruct(q, h, w, step=e)), q


def score(codec, r: torch.Tensor, rgb: np.ndarray, e: int) -> tuple[float, np.ndarray]:
    """(PSNR - step_slope * bpp, q) of the residuals ``r`` coded on grid e."""
    bpp, psnr, q = point(codec, r, rgb, e)
    return psnr - codec.step_slope * bpp, q


def choose(codec, rgb: np.ndarray) -> tuple[int, np.ndarray]:
    """(e, q): the step exponent for this image and its latents on that grid (the unit
    grid where the codec has no ``step_slope`` or no hyperprior)."""
    if not codec.steps or not codec.step_slope:
        return 0, codec.latents(rgb)
    h, w = rgb.shape[:2]
    if h * w > SAMPLE_SIDE ** 2:
        e = walk(TileSample(codec, rgb).score)
        return e, codec.latents(rgb, e)
    return search(codec, rgb)


def search(codec, rgb: np.ndarray) -> tuple[int, np.ndarray]:
    """(e, q) of the best grid for ``rgb`` as a whole (see the module's docstring)."""
    r = codec.residual(rgb)
    tried = {}

    def at(e: int) -> float:
        if e not in tried:
            tried[e] = score(codec, r, rgb, e)
        return tried[e][0]

    best = walk(at)
    return best, tried[best][1]


def walk(at) -> int:
    """The grid e of SEARCH with the best ``at(e)`` (a score), found from e = 0 in strides
    of 2 towards the better side, then one either side of the best."""
    best = 0
    for stride in (2, -2):
        e = best + stride
        while SEARCH[0] <= e <= SEARCH[1] and at(e) > at(best):
            best, e = e, e + stride
        if best != 0:
            break
    for e in (best - 1, best + 1):
        if SEARCH[0] <= e <= SEARCH[1] and at(e) > at(best):
            best = e
    return best


def tile_corners(h: int, w: int, tile: int = SAMPLE_TILE, tiles: int = SAMPLE_TILES,
                 align: int = 16) -> list[tuple[int, int, int, int]]:
    """(top, left, height, width) of about ``tiles`` tiles ``tile`` pixels a side spread
    evenly over an h x w image, in rows, their corners on a grid of ``align`` pixels."""
    th, tw = min(tile, h), min(tile, w)
    ny = int(np.clip(round(np.sqrt(tiles * h / w)), 1, min(tiles, h // th)))
    nx = int(np.clip(tiles // ny, 1, w // tw))
    ys = np.linspace(0, h - th, ny).astype(int) // align * align
    xs = np.linspace(0, w - tw, nx).astype(int) // align * align
    return [(int(y), int(x), th, tw) for y in ys for x in xs]


class TileSample:
    """A large image's rate and PSNR on each grid, estimated on about ``SAMPLE_TILES`` tiles
    of ``SAMPLE_TILE`` pixels spread over it. Each tile is analysed and synthesised with
    ``SAMPLE_HALO`` pixels of the image around it, and only its own latents (their side
    information included) and pixels are counted: what those parts of the whole image
    cost and give, without the seams a mosaic of tiles would add. (A synthesis needs only
    ``SYNTHESIS_MARGIN`` latents around a tile's own.)"""

    def __init__(self, codec, rgb: np.ndarray):
        self.codec = codec
        h, w = rgb.shape[:2]
        self.parts = []
        for top, left, th, tw in tile_corners(h, w, SAMPLE_TILE, SAMPLE_TILES, SAMPLE_HALO):
            y0, x0 = max(0, top - SAMPLE_HALO), max(0, left - SAMPLE_HALO)
            crop = rgb[y0:min(h, top + th + SAMPLE_HALO), x0:min(w, left + tw + SAMPLE_HALO)]
            inner = (top - y0, left - x0, th, tw)  # the tile's pixels in the crop
            self.parts.append((crop, codec.residual(crop), inner))
        self.pixels = sum(th * tw for *_, (_, _, th, tw) in self.parts)

    def point(self, e: int) -> tuple[float, float]:
        """(bpp, PSNR) of the tiles coded on grid e."""
        from nicodec.codec import quantize

        bits = sse = 0.0
        m = SYNTHESIS_MARGIN
        for crop, r, (iy, ix, th, tw) in self.parts:
            q = quantize(r, e)[0].to(torch.int32).cpu().numpy()
            top, left, bottom, right = window = (iy // 16, ix // 16, -(-(iy + th) // 16),
                                                 -(-(ix + tw) // 16))
            bits += self.codec.coder.ideal_bits(q, e, window)
            top, left = max(0, top - m), max(0, left - m)
            bottom, right = min(q.shape[1], bottom + m), min(q.shape[2], right + m)
            rec = self.codec.reconstruct(
                np.ascontiguousarray(q[:, top:bottom, left:right]),
                min(16 * bottom, crop.shape[0]) - 16 * top,
                min(16 * right, crop.shape[1]) - 16 * left, step=e)
            y, x = iy - 16 * top, ix - 16 * left
            diff = (rec[y:y + th, x:x + tw].astype(np.float64)
                    - crop[iy:iy + th, ix:ix + tw].astype(np.float64))
            sse += float((diff ** 2).sum())
        mse = sse / (3 * self.pixels)
        return bits / self.pixels, 100.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)

    def score(self, e: int) -> float:
        bpp, psnr = self.point(e)
        return psnr - self.codec.step_slope * bpp


def slope(codec, images: list[np.ndarray], spread: int = 2) -> float:
    """dB per bpp of the codec's mean curve over ``images`` (training photos), between the
    grids ``-spread`` and ``+spread``: the exchange rate :func:`choose` uses."""
    points = {-spread: [], spread: []}
    for rgb in images:
        r = codec.residual(rgb)
        for e, got in points.items():
            got.append(point(codec, r, rgb, e)[:2])
    (b0, p0), (b1, p1) = (np.mean(points[e], axis=0) for e in (-spread, spread))
    return float((p1 - p0) / (b1 - b0))


def adapter_slope(codec, files: list) -> float | None:
    """The slope of a freshly adapted codec (a hyperprior's) over up to ``SLOPE_IMAGES`` of
    its training images, spread over ``files``, each cut to its central ``SLOPE_SIDE``
    crop; None where it is not a positive number (an adapter trained too briefly: it stays
    on the unit grid)."""
    from nicodec import image

    picked = files[::max(1, len(files) // SLOPE_IMAGES)][:SLOPE_IMAGES]
    got = slope(codec, [central_crop(image.load(f).rgb, SLOPE_SIDE) for f in picked])
    return round(got, 3) if np.isfinite(got) and got > 0 else None
