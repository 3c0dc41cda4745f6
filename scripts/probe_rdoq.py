"""Greedy rate-distortion rounding at effort-1 cost: does rounding toward the predicted mean
pay where it is cheap in distortion?

    .venv/bin/python scripts/probe_rdoq.py MULTIPLIERS [IMAGES]    # e.g. 0.5,1,2 5

For each element, plain rounding's other neighbour ``alt`` (floor or ceil of y - median)
replaces ``q = round(y - median)`` when

    bits(alt) - bits(q) + m * lambda * 255^2 / 3 * w_c * (1 - 2 |y - median - q|) < 0

with the bits under the Gaussians the tables give q (its side information and context),
``w_c`` the squared pixel change per unit change of one latent of channel c (measured by
perturbing a grid of elements of a training crop), and ``m`` a multiplier swept. The
distortion term is the change in (y - q)^2, weighted per channel: what the codec's own
objective J trades. Real files, real pixels; BD-rate against plain rounding over q1-q4 on
the first IMAGES photos of the test set. Quoted in docs/results/effort-tuning.md.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from nicodec import data, image, metrics
from nicodec import hyperprior as hp
from nicodec.registry import Registry

N01 = torch.distributions.Normal(0.0, 1.0)


def bits(v, mean, sig):
    p = N01.cdf((v + 0.5 - mean) / sig) - N01.cdf((v - 0.5 - mean) / sig)
    return -torch.log2(p.clamp_min(1e-12))


@torch.no_grad()
def channel_gains(codec) -> torch.Tensor:
    """Pixel squared error ([0, 1] units) per unit^2 change of one latent, per channel."""
    rgb = image.load(data.list_images(data.split_dir("photo", "train"))[0]).rgb[:256, :256]
    q0 = torch.from_numpy(codec.latents(rgb)).float()
    base = codec.net.synthesis((q0 + codec.median[0])[None])
    grid = torch.zeros(q0.shape[1:])
    grid[2::6, 2::6] = 1
    out = []
    for c in range(q0.shape[0]):
        d = torch.zeros_like(q0)
        d[c] = grid
        x = codec.net.synthesis((q0 + d + codec.median[0])[None])
        out.append(float(((x - base) ** 2).sum()) / float(grid.sum()))
    return torch.tensor(out, dtype=torch.float64)


def main() -> None:
    multipliers = [float(v) for v in sys.argv[1].split(",")]
    files = data.list_images(data.split_dir("photo", "test"))[:int(sys.argv[2]) if len(sys.argv) > 2 else None]
    sigmas = torch.from_numpy(hp.scales())
    reg = Registry()
    curves = {m: [] for m in [0.0] + multipliers}
    for quality in (1, 2, 3, 4):
        codec = reg.codec(quality=quality)
        w = channel_gains(codec)
        k = codec.lam * 255 ** 2 / 3
        points = {m: [] for m in curves}
        for f in files:
            rgb = image.load(f).rgb
            h, wd = rgb.shape[:2]
            r = codec.residual(rgb)[0].double()
            q = torch.round(r)
            qi = q.to(torch.int32).numpy()
            shift, table = codec.coder.tables(qi, codec.coder.side(qi))
            mean = torch.from_numpy(shift).double() + \
                torch.from_numpy(table % hp.MEAN_STEPS).double() / hp.MEAN_STEPS
            sig = sigmas[torch.from_numpy(table // hp.MEAN_STEPS).long()]
            alt = torch.where(r < q, q - 1, q + 1)
            d_bits = bits(alt, mean, sig) - bits(q, mean, sig)
            d_dist = w[:, None, None] * (1 - 2 * (r - q).abs())
            for m in curves:
                qm = (torch.where(d_bits + m * k * d_dist < 0, alt, q) if m else q)
                qm = qm.to(torch.int32).numpy()
                points[m].append((metrics.bpp(len(codec.encode_latents(qm, wd, h)), wd, h),
                                  metrics.psnr(rgb, codec.reconstruct(qm, h, wd)),
                                  float((qm != qi).mean())))
        for m in curves:
            a = np.array(points[m]).mean(0)
            curves[m].append(a)
            print(f"q{quality} m={m}: {a[0]:.4f} bpp {a[1]:.3f} dB, {a[2] * 100:.2f} % of "
                  "the latents changed", flush=True)
    ref = np.array(curves[0.0])
    for m in multipliers:
        c = np.array(curves[m])
        print(f"m={m}: BD-rate {metrics.bd_rate(ref[:, 0], ref[:, 1], c[:, 0], c[:, 1]):+.2f} % "
              f"BD-PSNR {metrics.bd_psnr(ref[:, 0], ref[:, 1], c[:, 0], c[:, 1]):+.3f} dB")


if __name__ == "__main__":
    main()
