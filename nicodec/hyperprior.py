"""A mean-scale hyperprior over a codec's integer latents, decoded in integer arithmetic.

The factorized prior codes every latent channel with one fixed distribution, whatever the
image: a flat image costs 0.075-0.38 bpp (docs: models/training/README.md, "the factorized
prior's floor"). A hyperprior (Ballé et al. 2018; Minnen et al. 2018) sends side
information ``z`` from which the decoder predicts a distribution per latent element. Here
it codes the *same* symbols ``q = round(y - median)`` that the factorized codec writes, so
the transforms, every decoded pixel and every PSNR stay those of the codec it sits on; only
the file gets smaller.

    q     (B, M, h, w)      integer latents of the codec (its analysis, rounded)
    z     (B, N, h/4, w/4)  = h_a(q), side information; zq = round(z - median_z) is coded
                            with a factorized prior (frozen tables, :mod:`nicodec.entropy`)
    mu, s (B, M, h, w)      = h_s(zq): per element a Gaussian N(mu, sigma(s)) over q

Deterministic decoding: the rANS decoder must select exactly the encoder's distribution
for every element, on every machine, or the stream desynchronises. So ``h_s`` runs in
integer arithmetic (Ballé, Johnston and Minnen 2019, "Integer networks"): weights and
biases are fixed-point integers, each layer's sums are exact (computed in float64, whose
53-bit mantissa holds every partial sum exactly, see :data:`ACC_LIMIT`), and the layer
rescales by a power of two with floor division. Its output selects one of a frozen set of
frequency tables by index: the scale from :data:`SCALES` (thresholds on the integer output,
computed at export) and the mean to 1/:data:`MEAN_STEPS` of a step. The encoder's ``h_a``
runs in float: whatever ``z`` it finds is transmitted, so it needs no determinism.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


Z_CHANNELS = 64  # N: channels of the side information
Z_DOWNSAMPLING = 4  # z has 1/4 of q's rows and columns
Z_FILTERS = (3, 5, 5, 3)  # z's factorized density: network.EB_FILTERS, as the latents
# The frozen Gaussian scales: 64 geometric levels from CompressAI's lower bound 0.11 to 64
# (a larger predicted scale codes with the widest table; values beyond it escape).
SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 64.0, 64
MEAN_STEPS = 8  # the predicted mean is coded to 1/8 of a step
TAIL = 1e-6  # each Gaussian table spans all but this mass; the rest is ESCAPE
# h_s's nonlinearity: LeakyReLU of slope 2**-LEAK_BITS (0: ReLU; generation 7's q1/q2 use
# ReLU, its q3/q4 and the adapters' LeakyReLU, within 1 % of each other: see
# models/training/README.md). A file records its own.
LEAK_BITS = 6
LEAKS = (0, 6)


# Quantisation steps (format version 3): latents may be coded on a grid of step
# ``step_ratio() ** -e`` instead of 1, for an integer exponent ``e`` in the header. The ratio is
# that of neighbouring table scales, so a step's Gaussians are the unit grid's with their
# scale index moved by ``e`` (exact), and their means scaled by ``step_ratio() ** e`` in fixed
# point (:func:`rescale`). e > 0: a finer grid, more bits, less distortion.
STEP_BITS = 16  # the fixed-point precision of a step's multipliers
MAX_STEP = 24  # |e| <= MAX_STEP: steps from 0.089 to 11.3


def step_ratio() -> float:
    """sigma_{k+1} / sigma_k of the frozen table scales (about 1.106)."""
    return math.exp((math.log(SCALE_MAX) - math.log(SCALE_MIN)) / (SCALE_LEVELS - 1))


def step_size(e: int) -> float:
    """The grid step of exponent ``e``: the latents decode to ``step_size(e) * q + median``."""
    return step_ratio() ** -e


def rescale(v: torch.Tensor, e: int) -> torch.Tensor:
    """Integers ``v`` (int64) times ``step_ratio() ** e``, rounded half up, in fixed point:
    ``floor((v * M + 2**(STEP_BITS - 1)) / 2**STEP_BITS)`` with ``M = round(step_ratio() ** e *
    2**STEP_BITS)``; exact integer arithmetic, so every machine gets the same integers."""
    if e == 0:
        return v
    mult = round(step_ratio() ** e * (1 << STEP_BITS))
    return torch.div(v * mult + (1 << (STEP_BITS - 1)), 1 << STEP_BITS, rounding_mode="floor")


def check_step(e: int) -> None:
    if not -MAX_STEP <= e <= MAX_STEP:
        raise ValueError(f"quantisation step exponent {e} outside -{MAX_STEP}..{MAX_STEP}")


def scales() -> np.ndarray:
    """The frozen table scales sigma_k, k = 0..SCALE_LEVELS-1 (float64)."""
    return np.exp(np.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_LEVELS))


def sigma(s: torch.Tensor) -> torch.Tensor:
    """h_s's raw scale output -> the Gaussian's scale (>= SCALE_MIN, increasing in s)."""
    return F.softplus(s) + SCALE_MIN


def h_a_layers(m: int, n: int = Z_CHANNELS) -> nn.Sequential:
    """h_a: latents (B, m, h, w) -> z (B, n, h/4, w/4); LeakyReLU (the encoder's, float)."""
    return nn.Sequential(nn.Conv2d(m, n, 3, 1, 1), nn.LeakyReLU(inplace=True),
                         nn.Conv2d(n, n, 5, 2, 2), nn.LeakyReLU(inplace=True),
                         nn.Conv2d(n, n, 5, 2, 2))


def h_s_layers(m: int, n: int = Z_CHANNELS, leak_bits: int = LEAK_BITS) -> nn.Sequential:
    """h_s: z (B, n, h/4, w/4) -> (mu, s) (B, 2m, h, w); LeakyReLU of slope 2**-leak_bits
    (0: ReLU), which integer arithmetic computes exactly (:class:`IntegerSynthesis`)."""
    def act() -> nn.Module:
        return nn.LeakyReLU(2.0 ** -leak_bits) if leak_bits else nn.ReLU()

    return nn.Sequential(nn.ConvTranspose2d(n, n, 5, 2, 2, 1), act(),
                         nn.ConvTranspose2d(n, n, 5, 2, 2, 1), act(),
                         nn.Conv2d(n, 2 * m, 3, 1, 1))


# --------------------------------------------------------------------------- integer h_s
WEIGHT_BITS = 12  # weights and biases are round(w * 2**WEIGHT_BITS)
ACT_BITS = 8  # activations are carried as integers in units of 2**-ACT_BITS
ACT_MAX = (1 << 20) - 1  # each activation also clamps to [-ACT_MAX, ACT_MAX]
ZQ_MAX = 1 << 12  # |zq| above this is refused (the encoder clamps z before coding)
ACC_LIMIT = 1 << 53  # every partial sum below this is exact in float64
_H_S_LAYERS = (0, 2, 4)  # indices of the convolutions in h_s_layers


LAYOUT_LEAK = 6  # index of the activation's leak bits in a file's ``fixed_point``


def layout(leak_bits: int) -> torch.Tensor:
    """A file's ``hyper.fixed_point``: WEIGHT_BITS, ACT_BITS, ACT_MAX, ZQ_MAX, MEAN_STEPS,
    SCALE_LEVELS and h_s's leak bits (int64)."""
    return torch.tensor([WEIGHT_BITS, ACT_BITS, ACT_MAX, ZQ_MAX, MEAN_STEPS, SCALE_LEVELS,
                         leak_bits], dtype=torch.int64)


def check_layout(fixed: torch.Tensor) -> None:
    """Raise ValueError unless ``fixed`` is a ``fixed_point`` this release reads."""
    values = fixed.tolist() if fixed.dtype == torch.int64 and fixed.dim() == 1 else None
    if not values or len(values) != LAYOUT_LEAK + 1 or values[LAYOUT_LEAK] not in LEAKS or \
            values != layout(values[LAYOUT_LEAK]).tolist():
        raise ValueError(f"unsupported hyperprior fixed-point layout {fixed.tolist()}")


def fixed_point(t: torch.Tensor, bits: int) -> torch.Tensor:
    """round(t * 2**bits) as int32 (refused if out of int32's range)."""
    v = torch.round(t.double() * (1 << bits))
    if v.abs().max() >= 1 << 31:
        raise ValueError("weight out of the fixed-point range")
    return v.to(torch.int32)


def _floor_shift(acc: torch.Tensor, bits: int) -> torch.Tensor:
    """floor(acc / 2**bits) of exact integers held in float64 (exact: a power of two)."""
    return torch.floor(acc / float(1 << bits))


class IntegerSynthesis:
    """h_s in integer arithmetic: zq (N, h, w) integers -> (mean index, scale index) per
    latent element, bit-identical on every machine.

    Layer by layer (w: weight integers, units 2**-WEIGHT_BITS; a: activations, units
    2**-ACT_BITS)::

        a1 = act(floor((deconv(zq, w1) + b1) / 2**(WEIGHT_BITS - ACT_BITS)))
        a2 = act(floor((deconv(a1, w2) + b2 * 2**ACT_BITS) / 2**WEIGHT_BITS))
        mu, s = conv(a2, w3) + b3 * 2**ACT_BITS        (units 2**-(WEIGHT_BITS + ACT_BITS))

    where ``act(a) = clamp(a >= 0 ? a : floor(a / 2**leak), -ACT_MAX, ACT_MAX)`` with the
    file's ``leak`` bits (0: ReLU, ``clamp(a, 0, ACT_MAX)``). The mean is rounded to
    1/MEAN_STEPS: ``m = floor((mu * MEAN_STEPS + half) / unit)``;
    the table's mean fraction is ``m mod MEAN_STEPS`` and the symbol coded is
    ``q - floor(m / MEAN_STEPS)``. The scale index is the number of ``thresholds`` <= s.
    The convolutions run in float64 on integer values: with |zq| <= ZQ_MAX, |activations|
    <= ACT_MAX and the weights' magnitudes checked at load (:meth:`max_sum`), every partial
    sum is an integer below 2**53, so any summation order gives the exact result.
    """

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.w = [tensors[f"h_s.{i}.weight"].double() for i in _H_S_LAYERS]
        self.b = [tensors[f"h_s.{i}.bias"].double() for i in _H_S_LAYERS]
        self.thresholds = tensors["scale_thresholds"].double()
        self.leak = int(tensors["fixed_point"][LAYOUT_LEAK])
        if self.max_sum() >= ACC_LIMIT:
            raise ValueError("integer h_s weights too large for exact float64 sums")
        self.channels = self.w[2].shape[0] // 2

    def max_sum(self) -> float:
        """An upper bound on any partial sum's magnitude, inputs at their limits."""
        bound, inp = 0.0, float(ZQ_MAX)
        for i, (w, b) in enumerate(zip(self.w, self.b)):
            scale = 1.0 if i == 0 else float(1 << ACT_BITS)
            s = float(w.abs().sum(dim=(0, 2, 3)).max() if i < 2 else w.abs().sum(dim=(1, 2, 3)).max())
            bound = max(bound, s * inp + float(b.abs().max()) * scale)
            inp = float(ACT_MAX)
        return bound * MEAN_STEPS

    def __call__(self, zq: np.ndarray, shape: tuple[int, int],
                 tile: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """zq (N, hz, wz) -> (shift int32, table int16), each (M, h, w), for latents of
        ``shape`` (h, w): ``shift`` = floor of the rounded mean, ``table`` = scale index *
        MEAN_STEPS + mean fraction (:meth:`raw`, then :meth:`quantize`)."""
        return self.quantize(*self.raw(zq, shape, tile))

    def raw(self, zq: np.ndarray, shape: tuple[int, int],
            tile: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """zq (N, hz, wz) -> the last layer's integer (mu, s), each (M, h, w) float64 in
        units of 2**-(WEIGHT_BITS + ACT_BITS), for latents of ``shape`` (h, w). Runs in
        tiles of ``tile`` x ``tile`` z positions with a margin of :data:`HALO` (integer
        arithmetic: the result is the same for any tile)."""
        h, w = shape
        hz, wz = zq.shape[1:]
        mu = np.empty((self.channels, 4 * hz, 4 * wz), np.float64)
        s = np.empty((self.channels, 4 * hz, 4 * wz), np.float64)
        for r0 in range(0, hz, tile):
            for c0 in range(0, wz, tile):
                a, c = max(0, r0 - HALO), max(0, c0 - HALO)
                b, d = min(hz, r0 + tile + HALO), min(wz, c0 + tile + HALO)
                m_, s_ = self._run(zq[:, a:b, c:d])
                rows = slice(4 * (r0 - a), 4 * (min(hz, r0 + tile) - a))
                cols = slice(4 * (c0 - c), 4 * (min(wz, c0 + tile) - c))
                out = (slice(None), slice(4 * r0, 4 * min(hz, r0 + tile)),
                       slice(4 * c0, 4 * min(wz, c0 + tile)))
                mu[out], s[out] = m_[:, rows, cols], s_[:, rows, cols]
        return np.ascontiguousarray(mu[:, :h, :w]), np.ascontiguousarray(s[:, :h, :w])

    def quantize(self, mu: np.ndarray, s: np.ndarray,
                 step: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Integer (mu, s) (:meth:`raw`) -> (shift int32, table int16): the mean rounded to
        1/MEAN_STEPS, ``m = floor((mu * MEAN_STEPS + unit / 2) / unit)``, ``shift =
        floor(m / MEAN_STEPS)``; the table ``scale index * MEAN_STEPS + m mod MEAN_STEPS``,
        the scale index the number of ``thresholds`` <= s. On the grid of step exponent
        ``step`` (the symbols are ``q_e = round((y - median) / step_size(e))``), the mean is
        ``rescale(m, e)`` and the scale index moves by ``e``, within 0..SCALE_LEVELS-1."""
        unit = 1 << (WEIGHT_BITS + ACT_BITS)
        m = _floor_shift(torch.from_numpy(mu) * MEAN_STEPS + unit // 2,
                         WEIGHT_BITS + ACT_BITS).long()
        scale = torch.searchsorted(self.thresholds, torch.from_numpy(s).contiguous(), right=True)
        if step:
            m = rescale(m, step)
            scale = (scale + step).clamp(0, SCALE_LEVELS - 1)
        shift = torch.div(m, MEAN_STEPS, rounding_mode="floor")
        table = scale * MEAN_STEPS + (m - shift * MEAN_STEPS)
        return shift.numpy().astype(np.int32), table.numpy().astype(np.int16)

    @torch.no_grad()
    def _run(self, zq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The three layers on a whole (N, hz, wz) grid: integer (mu, s) (M, 4hz, 4wz)."""
        x = torch.from_numpy(np.asarray(zq, np.float64))[None]
        x = self._act(_floor_shift(F.conv_transpose2d(x, self.w[0], self.b[0], 2, 2, 1),
                                   WEIGHT_BITS - ACT_BITS))
        x = self._act(_floor_shift(
            F.conv_transpose2d(x, self.w[1], self.b[1] * (1 << ACT_BITS), 2, 2, 1),
            WEIGHT_BITS))
        out = F.conv2d(x, self.w[2], self.b[2] * (1 << ACT_BITS), 1, 1)[0]
        return out[: self.channels].numpy(), out[self.channels:].numpy()

    def _act(self, a: torch.Tensor) -> torch.Tensor:
        """The integer activation of exact integers ``a`` (float64)."""
        if not self.leak:
            return a.clamp_(0, ACT_MAX)
        return torch.where(a < 0, _floor_shift(a, self.leak), a).clamp_(-ACT_MAX, ACT_MAX)


HALO = 2  # z rows/columns around a tile that reach its outputs through h_s
SIDE_TILE = 256  # latents: larger latent grids run h_a in tiles of this many (the encoder's)
SIDE_HALO = 16  # latents of context around each (h_a's receptive field reaches 13)


# --------------------------------------------------------------------------- tables
def gaussian_tables() -> dict[str, torch.Tensor]:
    """A copy of :func:`_gaussian_tables`, computed once per process (0.2 s; every model
    file's ``hyper.gauss.*`` is checked against it as it loads)."""
    return {k: v.clone() for k, v in _gaussian_tables().items()}


@functools.lru_cache(maxsize=1)
def _gaussian_tables() -> dict[str, torch.Tensor]:
    """Frozen frequency tables of the discretized Gaussians, one per (scale k, mean
    fraction f): table ``t = k * MEAN_STEPS + f`` holds P(n) = Phi((n + 1/2 - f') / sigma_k)
    - Phi((n - 1/2 - f') / sigma_k), f' = f / MEAN_STEPS, over the symbols n that carry all
    but TAIL of the mass, then ESCAPE (:mod:`nicodec.entropy`'s layout: ``offset``,
    ``length``, and the tables' frequencies concatenated in ``freq``)."""
    from statistics import NormalDist

    from nicodec.entropy import quantize_frequencies

    ndtr = np.vectorize(NormalDist().cdf)
    z_tail = -NormalDist().inv_cdf(TAIL / 2)
    offsets, lengths, freqs = [], [], []
    for sig in scales():
        for f in range(MEAN_STEPS):
            mean = f / MEAN_STEPS
            lo = math.floor(mean - z_tail * sig)
            hi = math.ceil(mean + z_tail * sig)
            n = np.arange(lo, hi + 1, dtype=np.float64)
            pmf = ndtr((n + 0.5 - mean) / sig) - ndtr((n - 0.5 - mean) / sig)
            tail = max(1.0 - pmf.sum(), 1e-9)
            freqs.append(quantize_frequencies(np.append(pmf, tail)))
            offsets.append(lo)
            lengths.append(len(n))
    return {"offset": torch.tensor(offsets, dtype=torch.int32),
            "length": torch.tensor(lengths, dtype=torch.int32),
            "freq": torch.from_numpy(np.concatenate(freqs).astype(np.int32))}


def scale_thresholds() -> torch.Tensor:
    """int64 (SCALE_LEVELS - 1,): the integer h_s scale output at which the scale index
    steps from k - 1 to k (sigma(s) crosses the geometric mean of sigma_{k-1}, sigma_k)."""
    sig = scales()
    mid = np.sqrt(sig[:-1] * sig[1:]) - SCALE_MIN
    s_star = np.log(np.expm1(mid))  # softplus^-1
    return torch.from_numpy(np.ceil(s_star * (1 << (WEIGHT_BITS + ACT_BITS))).astype(np.int64))


@torch.no_grad()
def export_tensors(model) -> dict[str, torch.Tensor]:
    """What a model file stores of a trained :class:`~nicodec.network.HyperPrior` (under
    ``hyper.``): h_a's
    float weights (the encoder's), h_s's fixed-point integers, the scale thresholds, z's
    frozen factorized tables (``z.*``) and the Gaussian tables (``gauss.*``)."""
    from nicodec.entropy import build_tables

    out = {f"h_a.{k}": v.detach().float().contiguous() for k, v in model.h_a.state_dict().items()}
    for j, i in enumerate(_H_S_LAYERS):
        layer = model.h_s[i]
        out[f"h_s.{i}.weight"] = fixed_point(layer.weight, WEIGHT_BITS)
        out[f"h_s.{i}.bias"] = fixed_point(layer.bias, WEIGHT_BITS)
    out["scale_thresholds"] = scale_thresholds()
    out["fixed_point"] = layout(model.leak_bits)
    # the medians h_s was trained around: re-fitting them here would shift its inputs
    model.z_prior.update(force=True)
    # z's density itself (float; training only: an adapter's hyperprior starts from it)
    out |= {f"z_prior.{k}": v.detach().float().contiguous()
            for k, v in model.z_prior.named_parameters()}
    out |= {f"z.{k}": v.contiguous() for k, v in build_tables(model.z_prior).items()}
    out |= {f"gauss.{k}": v for k, v in gaussian_tables().items()}
    if hasattr(model, "context"):  # network.ContextHyperPrior: coder 3
        from nicodec import context

        out |= {f"ctx.{k}": v for k, v in context.export_tensors(model.context).items()}
    return out


def check(hyper: dict[str, torch.Tensor], m: int) -> None:
    """Raise ValueError unless ``hyper`` (a file's ``hyper.*``, untrusted) is a hyperprior
    over ``m`` latent channels that this release codes exactly: every key with its shape and
    dtype, finite float weights, integer weights whose sums stay exact, and the frozen
    Gaussian tables, thresholds and fixed-point layout of this release. (z's factorized
    tables ``z.*`` are checked as every model's tables are.)"""
    n = Z_CHANNELS
    f32, i32, i64 = torch.float32, torch.int32, torch.int64
    want = {"h_a.0.weight": ((n, m, 3, 3), f32), "h_a.0.bias": ((n,), f32),
            "h_a.2.weight": ((n, n, 5, 5), f32), "h_a.2.bias": ((n,), f32),
            "h_a.4.weight": ((n, n, 5, 5), f32), "h_a.4.bias": ((n,), f32),
            "h_s.0.weight": ((n, n, 5, 5), i32), "h_s.0.bias": ((n,), i32),
            "h_s.2.weight": ((n, n, 5, 5), i32), "h_s.2.bias": ((n,), i32),
            "h_s.4.weight": ((2 * m, n, 3, 3), i32), "h_s.4.bias": ((2 * m,), i32)}
    from nicodec.inference import density_filter_shapes

    want |= {k: (shape, f32) for k, shape in
             density_filter_shapes(n, "z_prior.", Z_FILTERS).items()}
    want["z_prior.quantiles"] = ((n, 1, 3), f32)
    canonical = {"scale_thresholds": scale_thresholds()}
    canonical |= {f"gauss.{k}": v for k, v in gaussian_tables().items()}
    z_keys = {f"z.{k}" for k in ("median", "offset", "length", "freq")} | {"fixed_point"}
    if set(hyper) != set(want) | set(canonical) | z_keys:
        odd = sorted(set(hyper) ^ (set(want) | set(canonical) | z_keys))
        raise ValueError(f"hyperprior tensors do not match (unexpected or missing {odd[:3]})")
    for k, (shape, dtype) in want.items():
        v = hyper[k]
        if (tuple(v.shape), v.dtype) != (shape, dtype):
            raise ValueError(f"hyperprior tensor {k} has shape {tuple(v.shape)} {v.dtype}")
        if dtype == f32 and not bool(torch.isfinite(v).all()):
            raise ValueError(f"hyperprior tensor {k} holds non-finite values")
    check_layout(hyper["fixed_point"])
    for k, v in canonical.items():
        if hyper[k].dtype != v.dtype or not torch.equal(hyper[k], v):
            raise ValueError(f"hyperprior tensor {k} differs from this release's frozen one")
    IntegerSynthesis(hyper)  # refuses weights whose sums would not be exact


# --------------------------------------------------------------------------- coder
def entropy_coder(tables: dict[str, torch.Tensor], hyper: dict[str, torch.Tensor]):
    """The coder of a model: its factorized ``tables``' :class:`LatentCoder`, or with a
    hyperprior (``hyper``, non-empty) a :class:`HyperCoder`."""
    from nicodec.entropy import LatentCoder

    return HyperCoder(tables, hyper) if hyper else LatentCoder(tables)


class HyperCoder:
    """Codes a codec's integer latents q (M, h, w) with the hyperprior; the interface of
    :class:`~nicodec.entropy.LatentCoder` (``encode``, ``decode``, ``ideal_bits``,
    ``median``, ``channels``), so a :class:`~nicodec.codec.Codec` takes
    either.

    Stream (one ANS stack; the decoder pops in this order): zq (N, ceil(h/4), ceil(w/4))
    with z's factorized tables, channel by channel as :class:`LatentCoder` does; then for
    each table t = 0, 1, ... the symbols ``q - shift`` of every element whose table is t,
    in (channel, row, column) order, with t's Gaussian table (escapes as in
    :mod:`nicodec.entropy`). ``shift`` and ``t`` come from :class:`IntegerSynthesis` on
    zq, which the decoder has before it needs them.

    With a context model (``hyper`` holds ``ctx.*``: coder 3, :mod:`nicodec.context`), the
    symbols after zq come in :func:`~nicodec.context.groups` groups, one after another;
    within group g, as above: by table, each table's elements in (channel, row, column)
    order. A group's ``shift`` and ``t`` are computed once the groups before it are
    decoded: h_s's (mu, s), refined by :class:`~nicodec.context.IntegerContext`.
    """

    NAME = 2  # the header's coder code (3 for an instance with a context model)

    def __init__(self, tables: dict[str, torch.Tensor], hyper: dict[str, torch.Tensor]):
        from nicodec.entropy import LatentCoder

        check_layout(hyper["fixed_point"])
        self.median = tables["median"].float()
        self.channels = len(self.median)
        self.z_coder = LatentCoder({k[2:]: v for k, v in hyper.items() if k.startswith("z.")})
        self.h_s = IntegerSynthesis(hyper)
        if self.h_s.channels != self.channels:
            raise ValueError("hyperprior does not match the latent channels")
        self.h_a = _analysis(hyper, self.channels, self.z_coder.channels)
        length = hyper["gauss.length"].numpy().astype(np.int64)
        freq = hyper["gauss.freq"].numpy()
        starts = np.concatenate([[0], np.cumsum(length + 1)])
        if starts[-1] != len(freq) or len(length) != SCALE_LEVELS * MEAN_STEPS:
            raise ValueError("malformed Gaussian tables")
        self.y_coder = LatentCoder.from_ragged(hyper["gauss.offset"], length,
                                               [freq[a:b] for a, b in zip(starts, starts[1:])])
        ctx = {k[4:]: v for k, v in hyper.items() if k.startswith("ctx.")}
        self.context = None
        if ctx:
            from nicodec.context import IntegerContext

            self.context = IntegerContext(ctx, self.channels)
            self.NAME = 3

    # ----------------------------------------------------------------- groups
    def _groups(self, shape: tuple[int, int, int]) -> list[np.ndarray]:
        """Flat indices into (M, h, w) of each group's elements, in (channel, row, column)
        order: one group of every element, or the context model's groups."""
        c_, h, w = shape
        if self.context is None:
            return [np.arange(c_ * h * w)]
        from nicodec import context

        k = c_ // context.SLICES
        anchor = context.anchors(h, w).numpy().astype(bool).ravel()
        plane = np.arange(h * w)
        out = []
        for g in range(context.groups()):
            i = g // 2
            pos = plane[anchor] if g % 2 == 0 else plane[~anchor]
            out.append((np.arange(k * i, k * (i + 1))[:, None] * (h * w) + pos[None]).ravel())
        return out

    def _tables_of(self, g: int, idx: np.ndarray, q: np.ndarray,
                   raw: tuple[np.ndarray, ...], step: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(shift, table) of group g's elements ``idx``, with ``q`` holding (at least) the
        groups before g. ``raw``: h_s's (mu, s), and their copies that the context model
        refines in place, group by group. On a grid of exponent ``step`` the context model
        reads the symbols brought back to the unit grid, ``rescale(q, -step)``."""
        mu_h, s_h, mu, s = raw
        if self.context is not None:
            unit_q = q if step == 0 else rescale(torch.from_numpy(
                np.asarray(q, np.int64)), -step).numpy()
            self.context.refine(g, unit_q, mu_h, s_h, mu, s)
        return self.h_s.quantize(mu.ravel()[idx], s.ravel()[idx], step)

    def _raw(self, zq: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
        mu, s = self.h_s.raw(zq, shape)
        return (mu, s, mu.copy(), s.copy()) if self.context is not None else (mu, s, mu, s)

    def tables(self, q: np.ndarray, zq: np.ndarray,
               step: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(shift int32, table int16), each (M, h, w): every element's distribution when
        latents ``q`` (on the grid of exponent ``step``) are coded with side information
        ``zq``."""
        raw = self._raw(zq, q.shape[1:])
        shift = np.empty(q.size, np.int32)
        table = np.empty(q.size, np.int16)
        for g, idx in enumerate(self._groups(q.shape)):
            shift[idx], table[idx] = self._tables_of(g, idx, q, raw, step)
        return shift.reshape(q.shape), table.reshape(q.shape)

    # ----------------------------------------------------------------- encoder side
    @torch.no_grad()
    def side(self, q: np.ndarray, step: int = 0) -> np.ndarray:
        """zq (N, ceil(h/4), ceil(w/4)) int64 of latents q (M, h, w) on the grid of exponent
        ``step``: h_a of ``step_size(step) * q`` in float (the encoder's choice; it is
        transmitted), rounded at z's medians, clamped to ZQ_MAX."""
        x = torch.from_numpy(np.asarray(q, np.float32))[None]
        if step:
            x = x * step_size(step)
        h, w = x.shape[-2:]
        x = F.pad(x, (0, -w % Z_DOWNSAMPLING, 0, -h % Z_DOWNSAMPLING))
        if max(x.shape[-2:]) <= SIDE_TILE:
            z = self.h_a(x)[0]
        else:  # large images: in tiles, each with the context h_a's outputs see
            z = torch.empty(self.z_coder.channels, x.shape[-2] // Z_DOWNSAMPLING,
                            x.shape[-1] // Z_DOWNSAMPLING)
            for r0 in range(0, x.shape[-2], SIDE_TILE):
                for c0 in range(0, x.shape[-1], SIDE_TILE):
                    a, c = max(0, r0 - SIDE_HALO), max(0, c0 - SIDE_HALO)
                    part = self.h_a(x[..., a:r0 + SIDE_TILE + SIDE_HALO,
                                      c:c0 + SIDE_TILE + SIDE_HALO])[0]
                    zr, zc = (r0 - a) // Z_DOWNSAMPLING, (c0 - c) // Z_DOWNSAMPLING
                    n_r = min(SIDE_TILE, x.shape[-2] - r0) // Z_DOWNSAMPLING
                    n_c = min(SIDE_TILE, x.shape[-1] - c0) // Z_DOWNSAMPLING
                    z[:, r0 // Z_DOWNSAMPLING:r0 // Z_DOWNSAMPLING + n_r,
                      c0 // Z_DOWNSAMPLING:c0 // Z_DOWNSAMPLING + n_c] = \
                        part[:, zr:zr + n_r, zc:zc + n_c]
        z = z - self.z_coder.median[:, None, None]
        return torch.round(z).clamp(-ZQ_MAX, ZQ_MAX).long().numpy()

    def encode(self, q: np.ndarray, step: int = 0) -> bytes:
        """Integer latents (M, h, w) on the grid of exponent ``step`` -> compressed bytes
        (uint32 words, little-endian)."""
        if q.ndim != 3 or q.shape[0] != self.channels:
            raise ValueError(f"expected ({self.channels}, H, W) latents, got {q.shape}")
        check_step(step)
        return self.encode_with(q, self.side(q, step), step=step)

    def encode_with(self, q: np.ndarray, zq: np.ndarray,
                    tables: tuple[np.ndarray, np.ndarray] | None = None,
                    step: int = 0) -> bytes:
        """The stream of latents q with side information zq (deterministic: the canonical
        encoding that :meth:`decode` checks a payload against). ``tables``: their
        :meth:`tables`, when the caller has them already (the decoder)."""
        import constriction

        coder = constriction.stream.stack.AnsCoder()
        shift, table = self.tables(q, zq, step) if tables is None else tables
        n = (q.astype(np.int64) - shift).ravel()
        table = table.ravel()
        for idx in reversed(self._groups(q.shape)):
            n_g, t_g = n[idx], table[idx]
            order = np.argsort(t_g, kind="stable")
            used, starts = np.unique(t_g[order], return_index=True)
            ends = np.append(starts[1:], len(order))
            for t, a, b in reversed(list(zip(used, starts, ends))):
                self.y_coder.push_symbols(coder, int(t), n_g[order[a:b]])
        self.z_coder.push(coder, zq)
        return coder.get_compressed().astype("<u4").tobytes()

    # ----------------------------------------------------------------- decoder side
    def decode(self, data: bytes, shape: tuple[int, int, int], strict: bool = True,
               step: int = 0) -> np.ndarray:
        """Compressed bytes -> integer latents of ``shape`` (M, h, w) on the grid of
        exponent ``step``, int32 (``strict``: as :meth:`LatentCoder.decode`, the payload
        must be the canonical encoding)."""
        import constriction

        from nicodec.errors import NicodecError

        check_step(step)
        c_, h, w = shape
        if c_ != self.channels:
            raise NicodecError("latent channel count does not match the model")
        if len(data) % 4:
            raise NicodecError("corrupt payload: length is not a whole number of words")
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        try:
            coder = constriction.stream.stack.AnsCoder(words)
        except Exception as e:  # constriction rejects e.g. a zero final word
            raise NicodecError(f"corrupt payload: {e}") from None
        zshape = (self.z_coder.channels, -(-h // Z_DOWNSAMPLING), -(-w // Z_DOWNSAMPLING))
        zq = self.z_coder.pop(coder, zshape, strict, last=False).astype(np.int64)
        if np.abs(zq).max(initial=0) > ZQ_MAX:
            raise NicodecError("corrupt payload: side information out of range")
        raw = self._raw(zq, (h, w))
        q = np.zeros((c_, h, w), np.int64)
        flat = q.reshape(-1)
        groups = self._groups(shape)
        shifts = np.empty(q.size, np.int32)
        tables = np.empty(q.size, np.int16)
        for g, idx in enumerate(groups):
            shift, table = self._tables_of(g, idx, q, raw, step)
            shifts[idx], tables[idx] = shift, table
            order = np.argsort(table, kind="stable")
            used, starts = np.unique(table[order], return_index=True)
            ends = np.append(starts[1:], len(order))
            n = np.empty(len(idx), np.int64)
            for i, (t, a, b) in enumerate(zip(used, starts, ends)):
                if strict and coder.is_empty():
                    raise NicodecError("corrupt payload: the entropy-coded stream ends before "
                                       "the latents do")
                last = strict and g == len(groups) - 1 and i == len(used) - 1
                n[order[a:b]] = self.y_coder.pop_symbols(coder, int(t), b - a, last)
            flat[idx] = n + shift
        if np.abs(q).max(initial=0) >= 1 << 31:
            raise NicodecError("corrupt payload: latent out of range")
        q = q.astype(np.int32)
        # as LatentCoder.decode: valid exactly when it is the encoding of what it decodes to
        # (with the tables it decoded with: the encoder's, since they depend only on zq and
        # the groups decoded before each)
        if strict and (not coder.is_empty() or self.encode_with(
                q, zq, (shifts.reshape(q.shape), tables.reshape(q.shape)), step) != bytes(data)):
            raise NicodecError("corrupt payload: the entropy-coded stream does not end where "
                               "the latents do")
        return q

    # ----------------------------------------------------------------- rates
    def ideal_bits(self, q: np.ndarray, step: int = 0,
                   window: tuple[int, int, int, int] | None = None) -> float:
        """-log2 p of latents q (on the grid of exponent ``step``) under the frozen tables,
        side information included. ``window`` (top, left, bottom, right, in latent rows and
        columns): only the latents inside it count, and the side information's over them
        (the window's edges on z's grid, every ``Z_DOWNSAMPLING`` latents, count it
        exactly); the rest is context."""
        zq = self.side(q, step)
        shift, table = self.tables(q, zq, step)
        if window is not None:
            top, left, bottom, right = window
            q, shift, table = (a[:, top:bottom, left:right] for a in (q, shift, table))
            zq = zq[:, top // Z_DOWNSAMPLING:-(-bottom // Z_DOWNSAMPLING),
                    left // Z_DOWNSAMPLING:-(-right // Z_DOWNSAMPLING)]
        n = (q.astype(np.int64) - shift).ravel()
        table = table.ravel()
        bits = self.z_coder.ideal_bits(np.ascontiguousarray(zq))
        for t in np.unique(table):
            bits += self.y_coder.ideal_bits_of(int(t), n[table == t])
        return bits

    def density(self, q: np.ndarray, device: str = "cpu", step: int = 0) -> "ConditionalDensity":
        """The distributions the tables give latents coded with ``q``'s side information,
        as a differentiable density (for :mod:`nicodec.effort`'s search around ``q``; with a
        context model, the context of ``q``'s own symbols), in units of the grid of
        exponent ``step``."""
        shift, table = self.tables(q, self.side(q, step), step)
        sig = torch.from_numpy(scales()).float()[torch.from_numpy(table // MEAN_STEPS).long()]
        mean = torch.from_numpy(shift).float() + torch.from_numpy(
            table % MEAN_STEPS).float() / MEAN_STEPS
        return ConditionalDensity(mean[None].to(device), sig[None].to(device),
                                  self.median.to(device)[None, :, None, None])


class ConditionalDensity:
    """Gaussians of fixed means and scales (1, M, h, w) over latents around the medians:
    the rate :mod:`nicodec.effort` differentiates for a hyperprior model (its side
    information held at the starting latents')."""

    def __init__(self, mean: torch.Tensor, sigma: torch.Tensor, median: torch.Tensor):
        self.mean, self.sigma, self.median = mean, sigma, median

    def bits(self, y_hat: torch.Tensor) -> torch.Tensor:
        """-log2 P per element of y_hat (1, M, h, w), differentiable."""
        d = torch.distributions.Normal(self.mean, self.sigma)
        v = y_hat - self.median
        return -torch.log2((d.cdf(v + 0.5) - d.cdf(v - 0.5)).clamp_min(1e-9))


def _analysis(hyper: dict[str, torch.Tensor], m: int, n: int) -> nn.Module:
    """h_a (float, the encoder's) from a model file's ``h_a.*`` tensors."""
    h_a = h_a_layers(m, n)
    h_a.load_state_dict({k[4:]: v for k, v in hyper.items() if k.startswith("h_a.")})
    return h_a.eval()
