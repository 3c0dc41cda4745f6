"""Rate control: a target size (bpp) or quality (PSNR) per image from fixed decoders.

nicodec ships one decoder per quality. Between two of them the encoder has two knobs:

- the quantisation grid (format version 3, :mod:`nicodec.quantstep`): a hyperprior model
  codes ``round((y - median) / d)`` for a step ``d = 1.1063^-e``, each grid a point on
  that model's own rate-distortion curve, about 10 % of rate apart;
- the rounding, which every decoder reads: a dead zone ``t`` rounds each latent towards
  zero,

      q = sign(r) * max(0, floor(|r| + 1/2 - t)),      t = 0: plain rounding,

  so more latents land on the cheap symbols around the median: fewer bits, more
  distortion (the classic encoder-side trade-off of JPEG and JPEG 2000 quantisers).

:func:`to_bpp` lands every quality within ``TOLERANCE`` of the target: on the coarsest grid
whose plain rate reaches it, then a small dead zone down into the band; and, as 0.18 did
(and alone with ``grids=False``, or for models without a hyperprior), the lowest quality
whose plain unit-grid rate reaches the target, with the dead zone it needs. It keeps the
landing with the best PSNR. A large dead zone is a poor knob: over 48 targets on 8 photo
test images (``python -m nicodec.bench --only ratecontrol --limit 8``) the grids' landings
gave 1.83 dB more PSNR on average than 0.18's at the same rate. :func:`to_psnr` weighs
0.18's smallest file on the unit grid (the lowest qualities that reach the target, the
largest dead zone that keeps it) against the coarsest grids that keep the target for the
lowest quality that reaches it and its neighbours, and keeps the smallest file. A target
no installed quality can reach is a clear error. The files are ordinary ``.nic`` files, of
format version 3 where they sit on another grid (``grids=False``: every release reads
them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nicodec import metrics, quantstep
from nicodec.codec import Codec
from nicodec.errors import NicodecError

TOLERANCE = 0.03  # --target-bpp: the file lands within +-3 % of the target
MAX_DEADZONE = 4.0  # t beyond this zeroes nearly every latent
MIN_DEADZONE = -0.5  # t = -1/2 rounds every latent away from zero: the most bits
BISECTION_STEPS = 30


@dataclass
class Controlled:
    """A rate-controlled encoding: the file and how it was made."""

    data: bytes
    codec: Codec
    deadzone: float
    bpp: float
    psnr: float
    step: int = 0  # the grid's exponent (0: the unit grid)


def deadzone(r: np.ndarray, t: float) -> np.ndarray:
    """Latents rounded towards zero by ``t`` (``t = 0``: plain rounding, as effort 1)."""
    if t == 0:
        return np.round(r).astype(np.int32)
    return (np.sign(r) * np.maximum(0.0, np.floor(np.abs(r) + 0.5 - t))).astype(np.int32)


class _Image:
    """One image against one codec on one grid: its continuous latents (in steps of the
    grid) and what each ``t`` gives."""

    def __init__(self, codec: Codec, rgb: np.ndarray, channels: int, step: int = 0,
                 residual=None):
        self.codec, self.rgb, self.channels, self.step = codec, rgb, channels, step
        self.h, self.w = rgb.shape[:2]
        # the same float32 arithmetic as Codec.latents, so t = 0 gives its bytes
        self.residual = codec.residual(rgb) if residual is None else residual
        r = self.residual[0]
        if step:
            from nicodec.hyperprior import step_size

            r = r / step_size(step)  # as codec.quantize
        self.r = r.cpu().numpy()
        self._cache: dict[float, bytes] = {}
        self._psnr: dict[float, float] = {}

    def on_grid(self, step: int) -> "_Image":
        """The same image and codec on another grid (the analysis is not run again)."""
        return _Image(self.codec, self.rgb, self.channels, step, self.residual)

    def data(self, t: float) -> bytes:
        if t not in self._cache:
            self._cache[t] = self.codec.encode_latents(deadzone(self.r, t), self.w, self.h,
                                                       self.channels, self.step)
        return self._cache[t]

    def bpp(self, t: float) -> float:
        return metrics.bpp(len(self.data(t)), self.w, self.h)

    def psnr(self, t: float) -> float:
        if t not in self._psnr:  # each costs a synthesis: bisection asks again at the end
            rec = self.codec.reconstruct(deadzone(self.r, t), self.h, self.w, step=self.step)
            self._psnr[t] = metrics.psnr(self.rgb, rec)
        return self._psnr[t]

    def result(self, t: float) -> Controlled:
        return Controlled(self.data(t), self.codec, t, self.bpp(t), self.psnr(t), self.step)


def _check(codecs: list[Codec]) -> list[Codec]:
    if not codecs:
        raise NicodecError("no codec to control the rate with")
    return sorted(codecs, key=lambda c: c.lam)


def to_bpp(codecs: list[Codec], rgb: np.ndarray, target: float, channels: int = 3,
           grids: bool = True) -> Controlled:
    """The file within ``TOLERANCE`` of ``target`` bpp with the best PSNR of the landings
    the module's docstring describes (``grids=False``: the unit grid's only).
    NicodecError when no quality can reach it."""
    if not target > 0:
        raise NicodecError(f"--target-bpp must be positive (got {target:g})")
    images = [_Image(c, rgb, channels) for c in _check(codecs)]
    if not grids or not any(i.codec.steps for i in images):
        return _unit_grid_bpp(images, target)
    found, error = [], None
    try:
        found.append(_unit_grid_bpp(images, target))
    except NicodecError as e:
        error = e
    found += [got for i in images if i.codec.steps
              for got in [_grid_bpp(i, target)] if got is not None]
    if not found:
        raise NicodecError(f"{error} (on the unit grid; no quantisation grid of any "
                           "quality reaches it either)")
    lo_ok, hi_ok = target * (1 - TOLERANCE), target * (1 + TOLERANCE)
    landed = [c for c in found if lo_ok <= c.bpp <= hi_ok]
    if not landed:
        return min(found, key=lambda c: abs(c.bpp - target))
    return max(landed, key=lambda c: c.psnr)


def _coarsest_grid(img: _Image, reaches) -> _Image | None:
    """``img``'s codec on the coarsest grid of ``quantstep.SEARCH`` whose plain rounding
    ``reaches`` the target (a test of an :class:`_Image`), walked one grid at a time from
    the unit grid; None where even the finest grid does not."""
    grid, e = img, 0
    if reaches(grid):
        while e > quantstep.SEARCH[0]:
            coarser = img.on_grid(e - 1)
            if not reaches(coarser):
                break
            grid, e = coarser, e - 1
        return grid
    while e < quantstep.SEARCH[1]:
        e += 1
        grid = img.on_grid(e)
        if reaches(grid):
            return grid
    return None


def _grid_bpp(img: _Image, target: float) -> Controlled | None:
    """``img``'s codec within ``TOLERANCE`` of ``target``: on the coarsest grid whose
    plain rate reaches the band, then the dead zone that lands in it; None where no grid
    of this quality reaches the band without a large dead zone (the coarsest grid's rate
    is above it, or the finest grid's below)."""
    lo_ok, hi_ok = target * (1 - TOLERANCE), target * (1 + TOLERANCE)
    grid = _coarsest_grid(img, lambda g: g.bpp(0.0) >= lo_ok)
    if grid is None:
        return None
    if grid.bpp(0.0) <= hi_ok:
        return grid.result(0.0)
    if grid.step == quantstep.SEARCH[0]:
        return None
    return _bisect(grid, target, 0.0, MAX_DEADZONE)


def _bisect(img: _Image, target: float, lo: float, hi: float) -> Controlled:
    """The dead zone in [lo, hi] (bpp(lo) above the band, bpp(hi) below) that lands
    within ``TOLERANCE`` of ``target``; the nearer side where the rate jumps across it."""
    lo_ok, hi_ok = target * (1 - TOLERANCE), target * (1 + TOLERANCE)
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        b = img.bpp(mid)
        if lo_ok <= b <= hi_ok:
            return img.result(mid)
        if b > hi_ok:
            lo = mid
        else:
            hi = mid
    return img.result(min((lo, hi), key=lambda t: abs(img.bpp(t) - target)))


def _unit_grid_bpp(images: list[_Image], target: float) -> Controlled:
    """0.18's rate control: the lowest quality whose plain unit-grid rate reaches the band,
    and the dead zone that lands in it."""
    lo_ok, hi_ok = target * (1 - TOLERANCE), target * (1 + TOLERANCE)
    top = images[-1].bpp(0.0)
    if top < lo_ok:
        raise NicodecError(f"--target-bpp {target:g} is out of reach: the highest quality "
                           f"({images[-1].codec.quality}) gives {top:.4f} bpp on this image")
    img = next(i for i in images if i.bpp(0.0) >= lo_ok)
    if img.bpp(0.0) <= hi_ok:
        return img.result(0.0)
    floor_bpp = img.bpp(MAX_DEADZONE)
    lo, hi = 0.0, MAX_DEADZONE  # bpp(lo) > target band >= ... bpp(hi)
    if floor_bpp > hi_ok:
        if img is images[0]:
            raise NicodecError(f"--target-bpp {target:g} is out of reach: quality "
                               f"{img.codec.quality} gives at least {floor_bpp:.4f} bpp on "
                               "this image (its header alone is 32 bytes)")
        # the next lower quality, rounding away from zero (t < 0) for more bits
        img = images[images.index(img) - 1]
        lo, hi = MIN_DEADZONE, 0.0
    return _bisect(img, target, lo, hi)


def to_psnr(codecs: list[Codec], rgb: np.ndarray, target: float, channels: int = 3,
            grids: bool = True) -> Controlled:
    """The smallest file with at least ``target`` dB PSNR: 0.18's (the unit grid, the
    largest dead zone that keeps the target) and, with ``grids``, the coarsest grid that
    keeps it of the lowest quality that reaches it on the unit grid and of its two
    neighbours, the smallest of those with the dead zone that still does.
    NicodecError when no quality reaches it."""
    images = [_Image(c, rgb, channels) for c in _check(codecs)]
    found, error = [], None
    try:
        found.append(_unit_grid_psnr(images, target))
    except NicodecError as e:
        if not grids:
            raise
        error = e
    if grids:
        # the lowest quality that reaches the target on the unit grid and its neighbours
        # (a higher one on a coarser grid, a lower one on a finer grid): the others would
        # walk far for larger files
        first = next((k for k, i in enumerate(images) if i.psnr(0.0) >= target),
                     len(images) - 1)
        near = images[max(0, first - 1):first + 2]
        on_grids = [got for i in near if i.codec.steps
                    for got in [_coarsest_grid(i, lambda g: g.psnr(0.0) >= target)]
                    if got is not None]
        if on_grids:
            img = min(on_grids, key=lambda i: len(i.data(0.0)))
            found.append(img.result(_largest_deadzone(img, target, 1.0, 8)))
    if not found:
        raise NicodecError(f"{error} (on the unit grid; no quantisation grid of any "
                           "quality reaches it either)")
    return min(found, key=lambda c: len(c.data))


def _largest_deadzone(img: _Image, target: float, hi: float, steps: int) -> float:
    """The largest dead zone in [0, hi] (bisected ``steps`` times) whose PSNR keeps
    ``target``; 0 keeps it."""
    lo = 0.0
    if img.psnr(hi) >= target:
        return hi
    for _ in range(steps):
        mid = (lo + hi) / 2
        if img.psnr(mid) >= target:
            lo = mid
        else:
            hi = mid
    return lo


def _unit_grid_psnr(images: list[_Image], target: float) -> Controlled:
    """0.18's: of the two lowest qualities that reach ``target`` on the unit grid, the
    smaller file with the largest dead zone that keeps it."""
    reach = [i for i in images if i.psnr(0.0) >= target]
    if not reach:
        raise NicodecError(f"--target-psnr {target:g} is out of reach: the highest quality "
                           f"({images[-1].codec.quality}) gives {images[-1].psnr(0.0):.2f} "
                           "dB on this image")
    best: Controlled | None = None
    for img in reach[:2]:  # the lowest qualities that reach it; higher ones only cost more
        found = img.result(_largest_deadzone(img, target, MAX_DEADZONE, 12))
        if best is None or len(found.data) < len(best.data):
            best = found
    return best
