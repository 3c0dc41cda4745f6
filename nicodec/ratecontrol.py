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
lowest quality that reaches it and its neighbours, and keeps the smallest file. Each
search tries few points, as each costs an encode or a synthesis: grids by interpolation
(the rate's logarithm and the PSNR are nearly linear in ``e``), dead zones by false
position; an image over a megapixel chooses on a :func:`sample` of tiles and lands the
whole image from that choice (:func:`_whole`). A target no installed quality can reach is
a clear error. The files are ordinary ``.nic`` files, of format version 3 where they sit
on another grid (``grids=False``: every release reads them).
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
SEARCH_STEPS = 30  # at most this many dead zones tried per landing
PSNR_SLACK = 0.002  # dB: --target-psnr stops its search this close above the target
# what a refusal adds where the models have grids: the unit grid's figure is not all
NO_GRID_REACHES = " (on the unit grid; no quantisation grid of any quality reaches it either)"
MAX_JUMP = 3  # grids: how far the grid search steps beyond the grids it has tried
SAMPLE_SIDE = 1024  # pixels: a larger image chooses its quality and grid on a sample ...
SAMPLE_TILE = 256  # ... of about SAMPLE_TILES tiles this size spread over it
SAMPLE_TILES = 16


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
        if t not in self._psnr:  # each costs a synthesis; the searches ask again
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
    the module's docstring describes (``grids=False``: the unit grid's only); an image
    over ``SAMPLE_SIDE`` squared pixels chooses on its :func:`sample` (:func:`_whole`).
    NicodecError when no quality can reach it."""
    if not target > 0:
        raise NicodecError(f"--target-bpp must be positive (got {target:g})")
    return _whole("bpp", _check(codecs), rgb, target, channels, grids)


def _images(codecs: list[Codec], rgb: np.ndarray, channels: int) -> list[_Image]:
    return [_Image(c, rgb, channels) for c in codecs]


def _to_bpp(images: list[_Image], target: float, grids: bool) -> Controlled:
    """:func:`to_bpp` of one image, given its analysis by each codec (lowest quality
    first)."""
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
        raise NicodecError(f"{error}{NO_GRID_REACHES}")
    lo_ok, hi_ok = target * (1 - TOLERANCE), target * (1 + TOLERANCE)
    landed = [c for c in found if lo_ok <= c.bpp <= hi_ok]
    if not landed:
        return min(found, key=lambda c: abs(c.bpp - target))
    return max(landed, key=lambda c: c.psnr)


def _coarsest_grid(img: _Image, value, target: float, start: int = 0) -> _Image | None:
    """``img``'s codec on the coarsest grid of ``quantstep.SEARCH`` whose plain rounding
    ``value`` (of an :class:`_Image`: a PSNR, or a log rate) reaches ``target``; None where
    even the finest grid does not. The search starts on grid ``start``.

    ``value`` grows with ``e`` (a finer grid: more bits, more decibels), about linearly
    (each grid is the same ratio of step sizes), so the search is an interpolation search:
    from the start and its neighbour towards the target, each next grid is where the
    line through the two grids tried nearest the target crosses it, kept inside the
    bracket of the coarsest grid known to reach it and the finest known not to, and
    outside a bracket at most ``MAX_JUMP`` grids beyond those tried (a screenshot's PSNR
    can be flat, and not monotone, across the finest grids of q4). It returns
    the grid that one step at a time from the start finds (where ``value`` grows with
    ``e``), after trying 3-4 grids instead of one per step.
    """
    lo, hi = quantstep.SEARCH
    tried: dict[int, tuple[_Image, float]] = {}

    def at(e: int) -> float:
        if e not in tried:
            grid = img if e == img.step else img.on_grid(e)
            tried[e] = (grid, value(grid))
        return tried[e][1]

    e = min(max(start, lo), hi)
    while True:
        at(e)
        reach = [k for k, (_, v) in tried.items() if v >= target]
        short = [k for k, (_, v) in tried.items() if v < target]
        coarsest = min(reach, default=None)
        finest = max((k for k in short if coarsest is None or k < coarsest), default=None)
        if coarsest is not None and (coarsest == lo or finest == coarsest - 1):
            return tried[coarsest][0]
        if finest == hi:
            return None
        low = lo if finest is None else finest + 1  # the grids still open
        high = hi if coarsest is None else coarsest - 1
        if len(tried) == 1:
            e = high if coarsest is not None else low  # the neighbour towards the target
            continue
        (e0, v0), (e1, v1) = sorted(((k, v) for k, (_, v) in tried.items()),
                                    key=lambda kv: abs(kv[1] - target))[:2]
        guess = e0 + (target - v0) * (e1 - e0) / (v1 - v0) if v1 != v0 else low
        if coarsest is None:  # beyond every grid tried: a flat curve would fly far
            high = min(high, max(tried) + MAX_JUMP)
        if finest is None:
            low = max(low, min(tried) - MAX_JUMP)
        e = int(min(max(np.ceil(guess - 1e-9), low), high))


def _grid_bpp(img: _Image, target: float, start: int = 0,
              first: float | None = None) -> Controlled | None:
    """``img``'s codec within ``TOLERANCE`` of ``target``: on the coarsest grid whose
    plain rate reaches the band (searched from grid ``start``), then the dead zone that
    lands in it (tried at ``first`` first); None where no grid of this quality reaches the
    band without a large dead zone (the coarsest grid's rate is above it, or the finest
    grid's below)."""
    lo_ok, hi_ok = target * (1 - TOLERANCE), target * (1 + TOLERANCE)
    grid = _coarsest_grid(img, lambda g: np.log(g.bpp(0.0)), np.log(lo_ok), start)
    if grid is None:
        return None
    if grid.bpp(0.0) <= hi_ok:
        return grid.result(0.0)
    if grid.step == quantstep.SEARCH[0]:
        return None
    return _land(grid, target, 0.0, MAX_DEADZONE, first)


def _land(img: _Image, target: float, lo: float, hi: float,
          first: float | None = None) -> Controlled:
    """The dead zone in [lo, hi] (bpp(lo) above the band, bpp(hi) below) that lands
    within ``TOLERANCE`` of ``target``, searched by :func:`_false_position` on the log
    rate (from ``first``, where given); the nearest tried where the rate jumps across the
    band."""
    lo_ok, hi_ok = target * (1 - TOLERANCE), target * (1 + TOLERANCE)
    logbpp = lambda t: np.log(img.bpp(t))  # noqa: E731
    tried = [lo]
    for t in _false_position(logbpp, np.log(target), lo, hi, SEARCH_STEPS, first=first):
        if lo_ok <= img.bpp(t) <= hi_ok:
            return img.result(t)
        tried.append(t)
    return img.result(min(tried, key=lambda t: abs(img.bpp(t) - target)))


def _false_position(f, target: float, lo: float, hi: float, steps: int,
                    width: float = 0.0, first: float | None = None):
    """The points of a search for where the decreasing ``f`` crosses ``target`` between
    ``lo`` (f above it) and ``hi`` (below), each yielded once ``f`` is known there:
    ``first`` where it is inside, then the chord's crossing (regula falsi, with the
    Illinois rule that halves a stale end's weight; ``f(hi)`` is asked for when a chord
    needs it), kept a sixteenth of the bracket from its ends, at most ``steps`` points or
    until the bracket is narrower than ``width``. A rate or a PSNR against the dead zone
    is smooth enough that this takes a third of the points that bisection does."""
    f_lo, f_hi, stale = f(lo) - target, None, 0
    for _ in range(steps):
        if hi - lo <= width:
            return
        if first is not None and lo < first < hi:
            mid, first = first, None
        else:
            if f_hi is None:
                f_hi = f(hi) - target
            margin = (hi - lo) / 16
            mid = lo + (hi - lo) * f_lo / (f_lo - f_hi) if f_lo != f_hi else (lo + hi) / 2
            mid = min(max(mid, lo + margin), hi - margin)
        f_mid = f(mid) - target
        yield mid
        if f_mid >= 0:
            lo, f_lo = mid, f_mid
            f_hi, stale = (f_hi / 2 if stale == 1 and f_hi is not None else f_hi), 1
        else:
            hi, f_hi = mid, f_mid
            f_lo, stale = (f_lo / 2 if stale == -1 else f_lo), -1


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
    return _land(img, target, lo, hi)


def to_psnr(codecs: list[Codec], rgb: np.ndarray, target: float, channels: int = 3,
            grids: bool = True) -> Controlled:
    """The smallest file with at least ``target`` dB PSNR: 0.18's (the unit grid, the
    largest dead zone that keeps the target) and, with ``grids``, the coarsest grid that
    keeps it of the lowest quality that reaches it on the unit grid and of its two
    neighbours, the smallest of those with the dead zone that still does.
    An image over ``SAMPLE_SIDE`` squared pixels chooses on its :func:`sample`
    (:func:`_whole`). NicodecError when no quality reaches it."""
    return _whole("psnr", _check(codecs), rgb, target, channels, grids)


def _to_psnr(images: list[_Image], target: float, grids: bool) -> Controlled:
    """:func:`to_psnr` of one image, given its analysis by each codec (lowest quality
    first)."""
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
                    for got in [_coarsest_grid(i, lambda g: g.psnr(0.0), target)]
                    if got is not None]
        if on_grids:
            img = min(on_grids, key=lambda i: len(i.data(0.0)))
            found.append(img.result(_largest_deadzone(img, target, 1.0, 8)))
    if not found:
        raise NicodecError(f"{error}{NO_GRID_REACHES}")
    return min(found, key=lambda c: len(c.data))


def _largest_deadzone(img: _Image, target: float, hi: float, steps: int) -> float:
    """The largest dead zone in [0, hi] whose PSNR keeps ``target`` (0 keeps it), found
    to a ``2 ** -steps`` of ``hi`` or within ``PSNR_SLACK`` dB of the target, whichever
    comes first (:func:`_false_position`)."""
    if img.psnr(hi) >= target:
        return hi
    if img.psnr(0.0) - target <= PSNR_SLACK:  # no dead zone keeps it
        return 0.0
    best = 0.0
    for t in _false_position(lambda t: img.psnr(t), target, 0.0, hi, steps,
                             hi / 2 ** steps):
        if img.psnr(t) >= target:
            best = max(best, t)
            if img.psnr(t) - target <= PSNR_SLACK:
                break
    return best


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


# --------------------------------------------------------------------------- large images
def sample(rgb: np.ndarray) -> np.ndarray | None:
    """A mosaic of about ``SAMPLE_TILES`` tiles of ``SAMPLE_TILE`` pixels a side, spread
    evenly over an image of more than ``SAMPLE_SIDE`` squared pixels (about that many
    pixels in all), in their order; None for a smaller image. Every part of a large
    photo weighs in its rate and PSNR, which a central crop's would not."""
    h, w = rgb.shape[:2]
    if h * w <= SAMPLE_SIDE ** 2:
        return None
    corners = quantstep.tile_corners(h, w, SAMPLE_TILE, SAMPLE_TILES)
    rows = sorted({y for y, *_ in corners})
    return np.concatenate([np.concatenate([rgb[y:y + th, x:x + tw] for top, x, th, tw in corners
                                           if top == y], axis=1) for y in rows], axis=0)


def _whole(kind: str, codecs: list[Codec], rgb: np.ndarray, target: float, channels: int,
           grids: bool) -> Controlled:
    """Rate control (``kind`` ``"bpp"``: :func:`_to_bpp`, ``"psnr"``: :func:`_to_psnr`) of
    the image; for a large one, on its :func:`sample`, whose choice of quality and grid
    then lands on the whole image from that grid (:func:`_whole_bpp`,
    :func:`_whole_psnr`: a few encodes or syntheses of the whole instead of dozens).

    A sample is not its image: it may be harder or easier, and reach or miss a target the
    whole would not. Where the sample's choice does not land the whole (or the sample
    refuses the target), the difference is measured once, on the unit grid of the quality
    concerned (that choice's, or the top or bottom quality), and the sample chooses again
    for the target shifted by it (in dB, or as a ratio of rates). Where that fails too,
    the whole image decides, as a small image does, on the analyses already made: what it
    gives or refuses is the answer. A target out of every quality's reach is refused
    after a few whole-image encodes or syntheses (:func:`_refuse_bpp`,
    :func:`_refuse_psnr`) with the line the full search would give.
    """
    control, land = (_to_bpp, _whole_bpp) if kind == "bpp" else (_to_psnr, _whole_psnr)
    part = sample(rgb)
    if part is None:
        return control(_images(codecs, rgb, channels), target, grids)
    value = ((lambda img: np.log(img.bpp(0.0))) if kind == "bpp"
             else (lambda img: img.psnr(0.0)))
    parts = _images(codecs, part, channels)  # the retry and the offset reuse them
    wholes: list[_Image | None] = [None] * len(codecs)  # each analysed once, when asked

    def whole(k: int) -> _Image:
        if wholes[k] is None:
            wholes[k] = _Image(codecs[k], rgb, channels)
        return wholes[k]

    aim = target
    for retry in (False, True):
        try:
            chosen = control(parts, aim, grids)
        except NicodecError:
            chosen = None
        if chosen is not None:
            k = next(j for j, c in enumerate(codecs) if c is chosen.codec)
            got = land(whole(k), chosen, target, grids)
            if got is not None:
                return got
        if retry:
            break
        if chosen is not None:
            ref = k
        elif kind == "psnr":
            ref = len(codecs) - 1  # the sample's top quality falls short
        else:  # a rate above the sample's top quality, or below its bottom
            ref = len(codecs) - 1 if aim > parts[-1].bpp(0.0) else 0
        offset = value(whole(ref)) - value(parts[ref])
        aim = target * np.exp(-offset) if kind == "bpp" else target - offset
    # the whole image decides, from the analyses and points the landings already made
    refuse = _refuse_bpp if kind == "bpp" else _refuse_psnr
    refuse(whole, len(codecs), target, grids)
    return control([whole(k) for k in range(len(codecs))], target, grids)


def _refuse_psnr(whole, n: int, target: float, grids: bool) -> None:
    """_to_psnr's refusal, raised early where the whole image's top two qualities (those
    :func:`_to_psnr` walks to finer grids for a target that none reaches; ``whole(k)``
    analyses quality ``k`` of ``n``) miss ``target`` even on their finest grid: a
    synthesis each, instead of a full search."""
    top = [whole(k) for k in range(max(0, n - 2), n)]
    finest = [i.on_grid(quantstep.SEARCH[1]) if grids and i.codec.steps else i for i in top]
    if all(g.psnr(0.0) < target for g in finest):
        error = (f"--target-psnr {target:g} is out of reach: the highest quality "
                 f"({top[-1].codec.quality}) gives {top[-1].psnr(0.0):.2f} dB on this image")
        if grids and any(i.codec.steps for i in top):
            error += NO_GRID_REACHES
        raise NicodecError(error)


def _refuse_bpp(whole, n: int, target: float, grids: bool) -> None:
    """_to_bpp's refusal (the same error line), raised early where it follows from a few
    encodes of the whole image (``whole(k)``: quality ``k`` of ``n`` analysed): a target
    above the top quality's plain unit-grid rate and every quality's finest grid (each
    grid's rate grows with ``e``, so no coarser one reaches it), or below the bottom
    quality's largest dead zone and every quality's coarsest grid. Other targets pass."""
    lo_ok, hi_ok = target * (1 - TOLERANCE), target * (1 + TOLERANCE)
    gridded = lambda: (whole(k) for k in reversed(range(n))  # noqa: E731
                       if grids and whole(k).codec.steps)
    top, bottom = whole(n - 1), whole(0)
    if top.bpp(0.0) < lo_ok:
        if any(i.on_grid(quantstep.SEARCH[1]).bpp(0.0) >= lo_ok for i in gridded()):
            return
        error = (f"--target-bpp {target:g} is out of reach: the highest quality "
                 f"({top.codec.quality}) gives {top.bpp(0.0):.4f} bpp on this image")
    elif bottom.bpp(0.0) >= lo_ok and bottom.bpp(MAX_DEADZONE) > hi_ok:
        if any(i.on_grid(quantstep.SEARCH[0]).bpp(0.0) <= hi_ok for i in gridded()):
            return
        error = (f"--target-bpp {target:g} is out of reach: quality "
                 f"{bottom.codec.quality} gives at least {bottom.bpp(MAX_DEADZONE):.4f} bpp "
                 "on this image (its header alone is 32 bytes)")
    else:
        return
    if grids and any(whole(k).codec.steps for k in range(n)):
        error += NO_GRID_REACHES
    raise NicodecError(error)


def _whole_bpp(img: _Image, chosen: Controlled, target: float,
               grids: bool) -> Controlled | None:
    """The whole image with the sample's quality within ``TOLERANCE`` of ``target``: on
    grids from the sample's (:func:`_grid_bpp`) or on the unit grid with a dead zone
    either way; None where it does not land."""
    lo_ok, hi_ok = target * (1 - TOLERANCE), target * (1 + TOLERANCE)
    if grids and img.codec.steps:
        got = _grid_bpp(img, target, chosen.step, chosen.deadzone)
    else:
        rate = img.bpp(0.0)
        if lo_ok <= rate <= hi_ok:
            return img.result(0.0)
        lo, hi = (0.0, MAX_DEADZONE) if rate > hi_ok else (MIN_DEADZONE, 0.0)
        if not img.bpp(lo) > hi_ok or not img.bpp(hi) < lo_ok:
            return None
        got = _land(img, target, lo, hi, chosen.deadzone)
    return got if got is not None and lo_ok <= got.bpp <= hi_ok else None


def _whole_psnr(img: _Image, chosen: Controlled, target: float,
                grids: bool) -> Controlled | None:
    """The whole image with the sample's quality: the coarsest grid from the sample's that
    keeps ``target`` (on the unit grid only: the unit grid), with the sample's dead zone
    where the whole keeps the target with it (and one step further along the line through
    it and no dead zone, where that keeps it too), else the largest below it that does,
    found in a few syntheses; None where this quality does not reach the target."""
    grid, limit = img, MAX_DEADZONE
    if grids and img.codec.steps:
        grid = _coarsest_grid(img, lambda g: g.psnr(0.0), target, chosen.step)
        limit = 1.0  # as _to_psnr's grid landings
    if grid is None or grid.psnr(0.0) < target:
        return None
    t = _largest_deadzone(grid, target, min(chosen.deadzone, limit), 3)
    plain, kept = grid.psnr(0.0), grid.psnr(t)
    if t > 0 and kept - target > PSNR_SLACK and plain > kept:
        further = min(limit, t + 0.8 * (kept - target) * t / (plain - kept))
        if grid.psnr(further) >= target:
            t = further
    return grid.result(t)
