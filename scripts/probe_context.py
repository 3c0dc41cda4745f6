"""How many bits would a context model on top of the hyperprior save on the same latents?

    .venv/bin/python scripts/probe_context.py QUALITY KIND STEPS OUT.json   # KIND: channel | checkerboard | both | none

The newest photo base of QUALITY keeps its analysis, its symbols q = round(y - median) and
its trained hyperprior (generation 7); a context model refines the hyperprior's Gaussian
(mu, s) per element from symbols the decoder already has:

* ``channel`` (Minnen & Singh 2020, channel-conditional): the M channels in S slices;
  slice i's (mu, s) += f_i(mu_h, s_h of slice i, q of slices < i), f_i three 3x3 convs;
* ``checkerboard`` (He et al. 2021): the anchors (row + column even) keep the hyperprior's
  (mu, s); the others' += f(mu_h, s_h, q of the anchors), f a 5x5 and a 3x3 conv.

f's last layer starts at zero, so training starts from generation 7's hyperprior exactly.
Trains on the rate alone over precomputed latents of training crops (the hyperprior at lr
1e-4, the context at 1e-3), then prints the ideal code lengths (-log2 p, z included) of the
photo test set's latents under the hyperprior alone and with the context. A probe: nothing
here is written into a bitstream.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nicodec import data, image
from nicodec.network import HyperPrior, gaussian_likelihood
from nicodec.registry import Registry

SLICES = 4


def act():
    return nn.LeakyReLU(1 / 64)


class Channel(nn.Module):
    def __init__(self, m: int, hidden: int = 64):
        super().__init__()
        k = m // SLICES
        self.k = k
        self.f = nn.ModuleList()
        for i in range(SLICES):
            last = nn.Conv2d(hidden, 2 * k, 3, 1, 1)
            nn.init.zeros_(last.weight), nn.init.zeros_(last.bias)
            self.f.append(nn.Sequential(nn.Conv2d(2 * k + k * i, hidden, 3, 1, 1), act(),
                                        nn.Conv2d(hidden, hidden, 3, 1, 1), act(), last))

    def forward(self, q, mu, s):
        k, mus, ss = self.k, [], []
        for i in range(SLICES):
            sl = slice(k * i, k * (i + 1))
            d = self.f[i](torch.cat([mu[:, sl], s[:, sl], q[:, :k * i]], 1))
            dm, ds = d.chunk(2, 1)
            mus.append(mu[:, sl] + dm)
            ss.append(s[:, sl] + ds)
        return torch.cat(mus, 1), torch.cat(ss, 1)


class Checkerboard(nn.Module):
    def __init__(self, m: int, hidden: int = 128):
        super().__init__()
        last = nn.Conv2d(hidden, 2 * m, 3, 1, 1)
        nn.init.zeros_(last.weight), nn.init.zeros_(last.bias)
        self.ctx = nn.Conv2d(m, hidden, 5, 1, 2)
        self.f = nn.Sequential(nn.Conv2d(hidden + 2 * m, hidden, 1), act(), last)

    def forward(self, q, mu, s):
        h, w = q.shape[-2:]
        r = torch.arange(h)[:, None] + torch.arange(w)[None, :]
        anchor = ((r % 2) == 0).to(q.dtype)
        d = self.f(torch.cat([self.ctx(q * anchor), mu, s], 1))
        dm, ds = d.chunk(2, 1)
        keep = 1 - anchor
        return mu + dm * keep, s + ds * keep


class Both(nn.Module):
    """The checkerboard's spatial context, then the channel-conditional one."""

    def __init__(self, m: int):
        super().__init__()
        self.cb, self.ch = Checkerboard(m), Channel(m)

    def forward(self, q, mu, s):
        return self.ch(q, *self.cb(q, mu, s))


def anchors(h: int, w: int) -> torch.Tensor:
    r = torch.arange(h)[:, None] + torch.arange(w)[None, :]
    return ((r % 2) == 0).float()


class Groups(nn.Module):
    """Decodable: slices x checkerboard phases, in the order (slice 0 anchors, slice 0
    others, slice 1 anchors, ...); each group's net reads every symbol decoded before it
    (q masked) and its slice's hyperprior (mu, s)."""

    def __init__(self, m: int, hidden: int = 64):
        super().__init__()
        self.k = m // SLICES
        self.f = nn.ModuleList()
        for g in range(2 * SLICES):
            last = nn.Conv2d(hidden, 2 * self.k, 3, 1, 1)
            nn.init.zeros_(last.weight), nn.init.zeros_(last.bias)
            self.f.append(nn.Sequential(nn.Conv2d(m + 2 * self.k, hidden, 3, 1, 1), act(),
                                        nn.Conv2d(hidden, hidden, 3, 1, 1), act(), last))

    def forward(self, q, mu, s):
        k, (h, w) = self.k, q.shape[-2:]
        a = anchors(h, w)
        mus, ss = [], []
        for i in range(SLICES):
            sl = slice(k * i, k * (i + 1))
            m_out, s_out = mu[:, sl], s[:, sl]
            for phase, where in ((0, a), (1, 1 - a)):
                known = torch.zeros(1, q.shape[1], h, w)
                known[:, :k * i] = 1
                if phase:
                    known[:, sl] = a
                d = self.f[2 * i + phase](torch.cat([q * known, mu[:, sl], s[:, sl]], 1))
                dm, ds = d.chunk(2, 1)
                m_out, s_out = m_out + dm * where, s_out + ds * where
            mus.append(m_out)
            ss.append(s_out)
        return torch.cat(mus, 1), torch.cat(ss, 1)


class Nothing(nn.Module):
    """The control: the hyperprior alone, trained as long."""

    def __init__(self, m: int):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, q, mu, s):
        return mu, s


def crops(codec, files, size=512, per=2, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for f in files:
        rgb = image.load(f).rgb
        h, w = rgb.shape[:2]
        for _ in range(per):
            y0 = int(rng.integers(max(1, h - size + 1)))
            x0 = int(rng.integers(max(1, w - size + 1)))
            c = np.ascontiguousarray(rgb[y0:y0 + size, x0:x0 + size])
            if c.shape[0] < size or c.shape[1] < size:
                continue
            out.append(torch.from_numpy(codec.latents(c).astype(np.float32)))
    return out


def bits(hp, ctx, q):
    mu, s, z_lik = hp.parameters_of(q)
    if ctx is not None:
        mu, s = ctx(q, mu, s)
    return -torch.log2(gaussian_likelihood(q, mu, s)).sum(), -torch.log2(z_lik).sum()


def main():
    quality, kind, steps, out = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    torch.manual_seed(0)
    torch.set_num_threads(1)
    reg = Registry()
    entry = reg.find_base(quality=quality)
    codec = reg.codec(quality=quality)
    tensors = reg.base_tensors(entry)[0]
    hyper = {k[6:]: v for k, v in tensors.items() if k.startswith("hyper.")}
    hp = HyperPrior.from_tensors(hyper)
    m = hp.m
    ctx = {"channel": Channel, "checkerboard": Checkerboard, "both": Both, "groups": Groups,
           "none": Nothing}[kind](m)
    t0 = time.time()
    train = crops(codec, data.list_images(data.split_dir("photo", "train")))
    test = [torch.from_numpy(codec.latents(image.load(f).rgb).astype(np.float32))
            for f in data.list_images(data.split_dir("photo", "test"))]
    pix_test = sum(q.shape[1] * q.shape[2] * 256 for q in test)
    print(f"{len(train)} train crops, {len(test)} test images ({time.time() - t0:.0f} s)",
          flush=True)

    def evaluate(with_ctx):
        hp.eval()
        with torch.no_grad():
            b = sum(sum(bits(hp, ctx if with_ctx else None, q[None])).item() for q in test)
        hp.train()
        return b / pix_test

    base = evaluate(False)
    print(f"hyperprior alone: {base:.4f} bpp", flush=True)
    opt = torch.optim.Adam([{"params": hp.parameters(), "lr": 1e-4},
                            {"params": ctx.parameters(), "lr": 1e-3}])
    rng = np.random.default_rng(1)
    win, batch, curve = 32, 8, []
    hp.train()
    for step in range(steps):
        if step == int(0.8 * steps):
            for g in opt.param_groups:
                g["lr"] /= 10
        qs = []
        for _ in range(batch):
            q = train[rng.integers(len(train))]
            y0 = int(rng.integers(q.shape[1] - win + 1))
            x0 = int(rng.integers(q.shape[2] - win + 1))
            qs.append(q[:, y0:y0 + win, x0:x0 + win])
        by, bz = bits(hp, ctx, torch.stack(qs))
        loss = (by + bz) / (batch * (16 * win) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % max(1, steps // 5) == 0:
            curve.append((step + 1, evaluate(True)))
            print(f"step {step + 1}: train {loss.item():.4f}, test {curve[-1][1]:.4f} bpp "
                  f"({(curve[-1][1] / base - 1) * 100:+.2f} %, {time.time() - t0:.0f} s)",
                  flush=True)
    json.dump({"quality": quality, "kind": kind, "steps": steps, "hyperprior_bpp": base,
               "curve": curve}, open(out, "w"), indent=1)


if __name__ == "__main__":
    main()
