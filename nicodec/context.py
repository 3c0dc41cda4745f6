"""A context model on the hyperprior: each group of symbols is predicted from the ones
decoded before it, in integer arithmetic.

The hyperprior (:mod:`nicodec.hyperprior`) predicts every latent element's Gaussian from
the side information ``z`` alone. Symbols already decoded say more: a codec's 64 channels
are correlated with each other (Minnen & Singh 2020, "channel-wise autoregressive entropy
models") and with their neighbours (He et al. 2021, "checkerboard context model"). Both are
used here, in the order of He et al. 2022 (ELIC): the M channels are cut into
:data:`SLICES` slices of ``k = M / SLICES``; each slice is decoded in two checkerboard
phases, first its *anchors* (row + column even), then the rest. That makes ``G = 2 *
SLICES`` groups, decoded one after another; within a group every element is independent
given what came before, so a group decodes in one pass over the whole grid.

    q        (M, h, w)   the codec's integer latents (the symbols every coder codes)
    mu, s    (M, h, w)   the hyperprior's Gaussian parameters (:class:`IntegerSynthesis`)
    known_g  (M, h, w)   1 where q is decoded before group g: the slices before g's at
                         every position, and for a second phase its own slice's anchors
    g's (mu, s) at its elements += f_g(q * known_g, mu and s of g's slice)

``f_g`` is three 3x3 convolutions (LeakyReLU of slope 1/64 between them); its last layer
starts at zero, so a context model starts as the hyperprior it refines. A model file keeps
the float nets' weights as fixed-point integers (``hyper.ctx.*``) and runs them exactly as
``h_s`` runs (:class:`IntegerContext`): every machine selects the same tables.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nicodec import hyperprior as hp

SLICES = 4  # channel slices; each decodes in two checkerboard phases
HIDDEN = 64  # channels of each group's net
Q_MAX = (1 << 12) - 1  # |q| is clamped to this where a net reads it (not where it is coded)
HALO = 3  # latents of context around a tile: three 3x3 convolutions
TILE = 128  # latent rows and columns per tile of the integer nets
LAYERS = (0, 2, 4)  # indices of the convolutions in each group's net
LAYOUT = (SLICES, HIDDEN, Q_MAX)  # a file's ``ctx.layout``


def groups() -> int:
    return 2 * SLICES


def anchors(h: int, w: int, r0: int = 0, c0: int = 0) -> torch.Tensor:
    """(h, w) float: 1 at the anchors (row + column even, in whole-image coordinates of a
    tile starting at (r0, c0)), else 0."""
    r = torch.arange(r0, r0 + h)[:, None] + torch.arange(c0, c0 + w)[None, :]
    return (r % 2 == 0).to(torch.float64)


def known_mask(g: int, m: int, anchor: torch.Tensor) -> torch.Tensor:
    """(m, h, w): 1 where q is decoded before group ``g`` (``anchor`` the (h, w) anchors)."""
    k, i, phase = m // SLICES, g // 2, g % 2
    known = torch.zeros((m, *anchor.shape), dtype=anchor.dtype)
    known[:k * i] = 1
    if phase:
        known[k * i:k * (i + 1)] = anchor
    return known


def where(g: int, anchor: torch.Tensor) -> torch.Tensor:
    """(h, w): 1 at group ``g``'s positions (its phase's) within its slice."""
    return anchor if g % 2 == 0 else 1 - anchor


def group_net(m: int, hidden: int = HIDDEN) -> nn.Sequential:
    """f_g: (q masked (m), mu and s of the slice (2k)) -> (d_mu, d_s) of the slice (2k)."""
    k = m // SLICES
    last = nn.Conv2d(hidden, 2 * k, 3, 1, 1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(nn.Conv2d(m + 2 * k, hidden, 3, 1, 1),
                         nn.LeakyReLU(2.0 ** -hp.LEAK_BITS),
                         nn.Conv2d(hidden, hidden, 3, 1, 1),
                         nn.LeakyReLU(2.0 ** -hp.LEAK_BITS), last)


class ContextModel(nn.Module):
    """The float (training) form: :meth:`forward` refines the hyperprior's (mu, s) of every
    element from the symbols decoded before its group (all groups at once: the masks keep
    each group to what its decoder has)."""

    def __init__(self, m: int):
        super().__init__()
        if m % SLICES:
            raise ValueError(f"{m} latent channels do not split into {SLICES} slices")
        self.m = m
        self.f = nn.ModuleList(group_net(m) for _ in range(groups()))

    def forward(self, q: torch.Tensor, mu: torch.Tensor,
                s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q, mu, s (B, M, h, w) -> the refined (mu, s)."""
        k, (h, w) = self.m // SLICES, q.shape[-2:]
        anchor = anchors(h, w).to(q)
        qc = q.clamp(-Q_MAX, Q_MAX)
        mus, ss = list(mu.split(k, 1)), list(s.split(k, 1))
        for g, net in enumerate(self.f):
            i = g // 2
            x = torch.cat([qc * known_mask(g, self.m, anchor), mu[:, k * i:k * (i + 1)],
                           s[:, k * i:k * (i + 1)]], 1)
            d_mu, d_s = net(x).chunk(2, 1)
            at = where(g, anchor)
            mus[i] = mus[i] + d_mu * at
            ss[i] = ss[i] + d_s * at
        return torch.cat(mus, 1), torch.cat(ss, 1)


@torch.no_grad()
def export_tensors(model: ContextModel) -> dict[str, torch.Tensor]:
    """``ctx.*`` of a model file: each group's weights and biases as fixed-point integers
    (``ctx.<g>.<layer>.weight`` int16, ``.bias`` int32) and ``ctx.layout``."""
    out = {"layout": torch.tensor(LAYOUT, dtype=torch.int64)}
    for g, net in enumerate(model.f):
        for i in LAYERS:
            w = hp.fixed_point(net[i].weight, hp.WEIGHT_BITS)
            if w.abs().max() > torch.iinfo(torch.int16).max:
                raise ValueError("context weight out of the int16 fixed-point range")
            out[f"{g}.{i}.weight"] = w.to(torch.int16)
            out[f"{g}.{i}.bias"] = hp.fixed_point(net[i].bias, hp.WEIGHT_BITS)
    return out


def from_tensors(ctx: dict[str, torch.Tensor], m: int) -> ContextModel:
    """The trainable form of a file's ``ctx.*`` (without the prefix)."""
    model = ContextModel(m)
    unit = float(1 << hp.WEIGHT_BITS)
    with torch.no_grad():
        for g, net in enumerate(model.f):
            for i in LAYERS:
                net[i].weight.copy_(ctx[f"{g}.{i}.weight"].double() / unit)
                net[i].bias.copy_(ctx[f"{g}.{i}.bias"].double() / unit)
    return model


def check(ctx: dict[str, torch.Tensor], m: int) -> None:
    """Raise ValueError unless ``ctx`` (a file's ``ctx.*``, untrusted) is a context model
    over ``m`` channels that this release runs exactly."""
    if "layout" not in ctx or ctx["layout"].dtype != torch.int64 or \
            ctx["layout"].tolist() != list(LAYOUT):
        raise ValueError(f"unsupported context layout {ctx.get('layout')}")
    if m % SLICES:
        raise ValueError(f"{m} latent channels do not split into {SLICES} slices")
    k = m // SLICES
    want = {"layout": None}
    for g in range(groups()):
        for i, (o, c) in zip(LAYERS, ((HIDDEN, m + 2 * k), (HIDDEN, HIDDEN), (2 * k, HIDDEN))):
            want[f"{g}.{i}.weight"] = (o, c, 3, 3)
            want[f"{g}.{i}.bias"] = (o,)
    if set(ctx) != set(want):
        raise ValueError("context tensors do not match (unexpected or missing "
                         f"{sorted(set(ctx) ^ set(want))[:3]})")
    for key, shape in want.items():
        dtype = torch.int16 if key.endswith("weight") else torch.int32
        if shape is not None and (tuple(ctx[key].shape) != shape or ctx[key].dtype != dtype):
            raise ValueError(f"context tensor {key} has shape {tuple(ctx[key].shape)} "
                             f"{ctx[key].dtype}")


class IntegerContext:
    """The context nets in integer arithmetic, as :class:`~nicodec.hyperprior.IntegerSynthesis`
    runs h_s. Group g refines the raw integer (mu, s) of its elements (units
    2**-(WEIGHT_BITS + ACT_BITS)); inputs are carried in units of 2**-ACT_BITS::

        x  = [clamp(q, +-Q_MAX) * known_g * 2**ACT_BITS,
              clamp(floor(mu / 2**WEIGHT_BITS)), clamp(floor(s / 2**WEIGHT_BITS))]
        a1 = act(floor((conv(x, w1) + b1 * 2**ACT_BITS) / 2**WEIGHT_BITS))
        a2 = act(floor((conv(a1, w2) + b2 * 2**ACT_BITS) / 2**WEIGHT_BITS))
        (d_mu, d_s) = conv(a2, w3) + b3 * 2**ACT_BITS

    (clamp: to +-ACT_MAX; act: LeakyReLU, ``floor(a / 2**LEAK_BITS)`` below 0, clamped to
    +-ACT_MAX). Every partial sum is an exact integer below 2**53 (checked at load)."""

    def __init__(self, ctx: dict[str, torch.Tensor], m: int):
        check(ctx, m)
        self.m, self.k = m, m // SLICES
        self.w = [[ctx[f"{g}.{i}.weight"].double() for i in LAYERS] for g in range(groups())]
        self.b = [[ctx[f"{g}.{i}.bias"].double() for i in LAYERS] for g in range(groups())]
        if self.max_sum() >= hp.ACC_LIMIT:
            raise ValueError("integer context weights too large for exact float64 sums")
        # group g reads only the q channels that can be decoded before it (the rest are
        # masked to 0 and add exactly 0): its first layer keeps their weights and mu's, s's
        self.reads = [self.k * (g // 2) + self.k * (g % 2) for g in range(groups())]
        for g, read in enumerate(self.reads):
            w0 = self.w[g][0]
            self.w[g][0] = torch.cat([w0[:, :read], w0[:, m:]], 1).contiguous()

    def max_sum(self) -> float:
        """An upper bound on any partial sum's magnitude, every input at its limit."""
        bound = 0.0
        for ws, bs in zip(self.w, self.b):
            for w, b in zip(ws, bs):
                s = float(w.abs().sum(dim=(1, 2, 3)).max())
                bound = max(bound, s * hp.ACT_MAX + float(b.abs().max()) * (1 << hp.ACT_BITS))
        return bound * hp.MEAN_STEPS

    def refine(self, g: int, q: np.ndarray, mu_h: np.ndarray, s_h: np.ndarray,
               mu: np.ndarray, s: np.ndarray) -> None:
        """Add group ``g``'s corrections to its elements of ``mu`` and ``s`` (M, h, w)
        float64, in place. ``mu_h``, ``s_h``: the hyperprior's own integer (mu, s), which
        every group reads (as training's :class:`ContextModel` does); ``q`` (M, h, w): at
        least the symbols decoded before g (the others are masked off). Runs in tiles of
        TILE x TILE latents with a margin of HALO: integer arithmetic gives the same
        result for any tile."""
        h, w = q.shape[1:]
        i = g // 2
        sl = slice(self.k * i, self.k * (i + 1))
        for r0 in range(0, h, TILE):
            for c0 in range(0, w, TILE):
                a, c = max(0, r0 - HALO), max(0, c0 - HALO)
                b, d = min(h, r0 + TILE + HALO), min(w, c0 + TILE + HALO)
                anchor = anchors(b - a, d - c, a, c)
                read = self.reads[g]
                x = torch.cat([
                    torch.from_numpy(np.clip(q[:read, a:b, c:d], -Q_MAX, Q_MAX)
                                     .astype(np.float64))
                    * known_mask(g, self.m, anchor)[:read] * float(1 << hp.ACT_BITS),
                    self._to_act(mu_h[sl, a:b, c:d]), self._to_act(s_h[sl, a:b, c:d])])
                d_mu, d_s = self._run(g, x[None])
                at = where(g, anchor).numpy()
                rows = slice(r0 - a, min(h, r0 + TILE) - a)
                cols = slice(c0 - c, min(w, c0 + TILE) - c)
                out = (sl, slice(r0, min(h, r0 + TILE)), slice(c0, min(w, c0 + TILE)))
                mu[out] += (d_mu * at)[:, rows, cols]
                s[out] += (d_s * at)[:, rows, cols]

    @staticmethod
    def _to_act(v: np.ndarray) -> torch.Tensor:
        return hp._floor_shift(torch.from_numpy(np.ascontiguousarray(v)), hp.WEIGHT_BITS).clamp_(-hp.ACT_MAX, hp.ACT_MAX)

    @torch.no_grad()
    def _run(self, g: int, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        w, b = self.w[g], self.b[g]
        unit = float(1 << hp.ACT_BITS)
        for j in (0, 1):
            x = hp._floor_shift(F.conv2d(x, w[j], b[j] * unit, 1, 1), hp.WEIGHT_BITS)
            x = torch.where(x < 0, hp._floor_shift(x, hp.LEAK_BITS), x).clamp_(-hp.ACT_MAX,
                                                                              hp.ACT_MAX)
        out = F.conv2d(x, w[2], b[2] * unit, 1, 1)[0].numpy()
        return out[:self.k], out[self.k:]
