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
makes effort 1 about 8x slower); images over ``SAMPLE_SIDE`` squared pixels are scored on
their central ``SAMPLE_SIDE`` x ``SAMPLE_SIDE`` crop, so that the choice costs at most
about 4 s whatever the size. Files on the unit grid stay format version 1 or 2 (every
release reads them); others are version 3.
"""

from __future__ import annotations

import numpy as np
import torch

from nicodec import metrics

SEARCH = (-8, 12)  # the exponents the search may pick (the format allows +-MAX_STEP)
SAMPLE_SIDE = 1024  # pixels: larger images choose their grid on a central crop this size
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
        e = search(codec, central_crop(rgb, SAMPLE_SIDE))[0]
        return e, codec.latents(rgb, e)
    return search(codec, rgb)


def search(codec, rgb: np.ndarray) -> tuple[int, np.ndarray]:
    """(e, q) of the best grid for ``rgb`` as a whole (see the module's docstring)."""
    r = codec.residual(rgb)
    tried = {0: score(codec, r, rgb, 0)}

    def at(e: int) -> float:
        if e not in tried:
            tried[e] = score(codec, r, rgb, e)
        return tried[e][0]

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
    return best, tried[best][1]


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
