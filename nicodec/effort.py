"""Encoder effort: better integer latents for the same frozen decoder.

Effort 1 writes what every release has written, ``q = round(g_a(x) - median)``. Rounding
the analysis output is only a guess at the best ``q``: the decoder and the tables are
fixed, so an encoder may search for the ``q`` that minimises the codec's own objective,

    J(q) = R(q) / pixels + lambda * 255^2 * MSE(x, clamp(g_s(q + median)))

(the training loss, with R the real bits under the frozen tables). Higher efforts run
gradient steps on the continuous latents ``r = y - median`` (Campos et al. 2019, latent
refinement; Yang, Bamler and Mandt 2020, stochastic Gumbel annealing, SGA), with the
rate differentiated through the model's own density (:class:`~nicodec.inference.
FactorizedDensity`; for a hyperprior model, the Gaussians its tables give the effort-1
latents' side information, :class:`~nicodec.hyperprior.ConditionalDensity`):

* ``ste``: ``round(r)`` forward, identity backward (straight-through);
* ``sga``: a Gumbel-softmax choice between ``floor(r)`` and ``ceil(r)`` whose temperature
  anneals towards hard rounding, so the search can cross rounding boundaries.

Every candidate ``q`` met on the way is scored by the real J, and the best one is kept;
the effort-1 ``q`` is a candidate, so a higher effort never writes a worse file by J.
Where the CPU (or GPU) computes bf16 natively, the search's synthesis runs in bf16
(autocast; the density, the loss and the scoring stay float32): 1.3-1.8x as fast at 40
and 120 steps, for BD-rates within 0.5 points of float32's (docs/results/effort-tuning.md).
The search runs on the grid of the step the encoder picked (:mod:`nicodec.quantstep`);
on the unit grid the file format does not change: every decoder of every release reads it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from nicodec import tiling
from nicodec.codec import Codec, pixels_to_tensor
from nicodec.errors import NicodecError
from nicodec.inference import bf16_is_fast


@dataclass(frozen=True)
class Effort:
    """One effort level: how many gradient steps on the latents, and how."""

    level: int
    steps: int  # 0: plain rounding (effort 1)
    method: str = "round"  # "round", "ste" or "sga"
    lr: float = 0.0
    description: str = ""
    # the search's synthesis in bf16 where the hardware computes it natively (search_dtype)
    bf16: bool = True


# Learning rates tuned in 0.9 on 256x256 crops of six training images per domain, all four
# qualities (docs/results/effort-tuning.md): a smaller step pays at every length, and a
# longer search wants a smaller one still (0.8's 0.08 / 0.05 left 5-8 points of BD-rate).
EFFORTS = {
    1: Effort(1, 0, description="plain rounding, as every release writes (fast)"),
    2: Effort(2, 15, "sga", 0.03, "15 steps of stochastic Gumbel annealing"),
    3: Effort(3, 40, "sga", 0.02, "40 steps of stochastic Gumbel annealing"),
    4: Effort(4, 120, "sga", 0.015, "120 steps of stochastic Gumbel annealing (slow)"),
}
DEFAULT_EFFORT = 1


def effort(level: int) -> Effort:
    if level not in EFFORTS:
        raise NicodecError(f"effort must be one of {', '.join(map(str, EFFORTS))} "
                           f"(got {level})")
    return EFFORTS[level]


Progress = Callable[[int, int], None]  # (steps done, steps in all)


def objective(codec: Codec, q: np.ndarray, rgb: np.ndarray, lam: float,
              step: int = 0) -> tuple[float, float, float]:
    """(J, bits, MSE on 0..255) of integer latents (on the grid of step exponent ``step``):
    real table bits, real decoded pixels."""
    h, w = rgb.shape[:2]
    bits = codec.coder.ideal_bits(q, step)
    rec = codec.reconstruct(q, h, w, step=step)
    mse = float(np.mean((rec.astype(np.float64) - rgb.astype(np.float64)) ** 2))
    return bits / (h * w) + lam * mse, bits, mse


def sga_round(r: torch.Tensor, tau: float, generator: torch.Generator | None) -> torch.Tensor:
    """Stochastic Gumbel annealing (Yang et al. 2020, eq. 8): a relaxed one-hot sample
    between ``floor(r)`` and ``ceil(r)``, each weighted by ``-atanh(distance) / tau``."""
    eps = 1e-5
    lo = torch.floor(r)
    d_lo = (r - lo).clamp(eps, 1 - eps)
    logits = torch.stack([-torch.atanh(d_lo), -torch.atanh(1 - d_lo)], -1) / tau
    u = torch.rand(logits.shape, generator=generator, device=r.device).clamp(1e-10, 1 - 1e-10)
    gumbel = -torch.log(-torch.log(u))
    w = torch.softmax((logits + gumbel) / tau, -1)
    return lo + w[..., 1]


def search_dtype(device: str) -> torch.dtype | None:
    """The precision of the search's synthesis: bf16 where the hardware computes it
    natively (as training's fast path), else None (float32)."""
    return torch.bfloat16 if bf16_is_fast(str(device)) else None


def refine(codec: Codec, rgb: np.ndarray, level: int = DEFAULT_EFFORT, lam: float | None = None,
           progress: Progress | None = None, seed: int = 0, step: int = 0) -> np.ndarray:
    """Integer latents (C, h, w) int32 of an image at an effort level, on the grid of step
    exponent ``step``, optimised for ``lam`` (default: the codec's own lambda; another
    lambda trades rate for quality at encode time). Effort 1 is exactly
    :meth:`Codec.latents`."""
    from nicodec.codec import dequantize, quantize

    e = effort(level)
    codec.check_step(step)
    if e.steps == 0:
        return codec.latents(rgb, step)
    net, density = codec.net, getattr(codec.net, "density", None)
    if density is None or not hasattr(net, "synthesis_graph"):
        raise NicodecError("this codec has no latent density to search with (effort > 1 "
                           "needs a model loaded for inference)")
    lam = codec.lam if lam is None else lam
    h, w = rgb.shape[:2]
    if tiling.tiled(w, h):
        raise NicodecError(f"effort {level} searches the whole image at once: images over "
                           f"{tiling.TILED_ABOVE:,} pixels are encoded at effort 1")
    pixels = h * w
    dtype = search_dtype(codec.device) if e.bf16 else None
    target = pixels_to_tensor(rgb, codec.device)[..., :h, :w]
    median = codec.median
    # one analysis: effort 1's latents are its rounding (on the grid: r0 in grid units)
    r0 = codec.residual(rgb)
    if step:
        from nicodec.hyperprior import step_size

        r0 = r0 / step_size(step)  # as codec.quantize: q0 is effort 1's latents on the grid
    q0 = quantize(r0)[0].to(torch.int32).cpu().numpy()
    if hasattr(codec.coder, "density"):  # a hyperprior: the tables q0's side info picks
        density = codec.coder.density(q0, codec.device, step)
    best_q, best_j = q0, objective(codec, q0, rgb, lam, step)[0]
    # channels_last: the transposed convolutions' backward runs ~1.3x faster on CPU (the
    # search only chooses q; the decoder's own arithmetic is untouched)
    r = r0.clone().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    opt = torch.optim.Adam([r], lr=e.lr)
    gen = torch.Generator(device=codec.device).manual_seed(seed)
    checks = set(np.linspace(0, e.steps - 1, 6).round().astype(int).tolist())
    for it in range(e.steps):
        if e.method == "ste":
            r_hat = r + (torch.round(r) - r).detach()
        else:
            tau = max(0.5 * math.exp(-4.0 * it / e.steps), 1e-3)
            r_hat = sga_round(r, tau, gen)
        with torch.autocast(torch.device(codec.device).type, dtype=dtype,
                            enabled=dtype is not None):
            x_hat = net.synthesis_graph(dequantize(r_hat, step) + median)
        x_hat = x_hat.float()[..., :h, :w].clamp(0, 1)
        loss = density.bits(r_hat + median).sum() / pixels + lam * 255 ** 2 * F.mse_loss(x_hat, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if it in checks or it == e.steps - 1:
            q = np.ascontiguousarray(torch.round(r.detach())[0].to(torch.int32).cpu().numpy())
            j = objective(codec, q, rgb, lam, step)[0]
            if j < best_j:
                best_q, best_j = q, j
        if progress:
            progress(it + 1, e.steps)
    return best_q


def encode(codec: Codec, rgb: np.ndarray, channels: int = 3, level: int = DEFAULT_EFFORT,
           lam: float | None = None, progress: Progress | None = None,
           step: int | str = 0) -> bytes:
    """A complete ``.nic`` file at an effort level (same header, same decoder), on the grid
    of step exponent ``step`` (``"auto"``: the one :func:`nicodec.quantstep.choose`
    picks; a search then refines the latents on that grid)."""
    if effort(level).steps == 0 and lam is None:
        return codec.encode(rgb, channels, step)
    if step == "auto":
        from nicodec import quantstep

        step = quantstep.choose(codec, rgb)[0]
    return codec.encode_latents(refine(codec, rgb, level, lam, progress, step=step),
                                rgb.shape[1], rgb.shape[0], channels, step)
