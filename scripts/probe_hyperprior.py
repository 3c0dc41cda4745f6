"""How many bits would an entropy model that adapts to the image save on the same latents?

    .venv/bin/python scripts/probe_hyperprior.py [--domain NAME] QUALITY STEPS OUT.json
    .venv/bin/python scripts/probe_hyperprior.py project RESULTS.json OUT.json ...   # q1-q4

The newest base of QUALITY (or, with ``--domain``, that quality of the newest installed
adaptation of that name, e.g. ``astro``, trained and tested on its domain) keeps its
analysis and its symbols q = round(y - median) (so every decoded pixel and every PSNR stays
the codec's); only the entropy model changes. (The probe runs the analysis under bf16
autocast for speed, so a few symbols may differ from the codec's float32 ones; both code
lengths it compares are of the same symbols.)
A mean-scale hyperprior (Ballé et al. 2018; Minnen et al. 2018) reads the symbols with
h_a (3x3 conv, two 5x5 stride-2 convs, 64 channels) into side information z at 1/64 of the
image's resolution, coded with a factorized prior (CompressAI's EntropyBottleneck, the
noise proxy in training, rounding at the median in evaluation), and h_s predicts a
Gaussian (mean, scale) per latent element: p(q) = Phi((q + 1/2 - mu) / sigma) -
Phi((q - 1/2 - mu) / sigma). h_a, h_s and z's prior train on the rate alone, batch 8 of
256x256 training crops, Adam at 1e-3 (3e-4 from 80 % of STEPS).

It prints and writes, per test image, the ideal code length (-log2 p, no coder overhead)
under the codec's factorized prior and under the hyperprior (z included), and the same
for flat 512x512 images. Since the analysis was trained for the factorized prior, this is
a lower bound on what a hyperprior trained with the transforms would save. A probe, not a
codec: nothing here is written into a bitstream. Quoted in models/training/README.md.

``project`` turns the four qualities' probes into the curve the codec would have: each
test image's real file size (from an ``nicodec eval`` JSON such as docs/results/photo.json,
curve ``nicodec:DOMAIN``) times that image's ideal-code-length ratio, at the same PSNR, and
prints its BD-rates against the classic codecs in that JSON beside the real curve's.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck

from nicodec import data, image, registry
from nicodec.codec import pixels_to_tensor

Z_CHANNELS = 64
CROP, BATCH = 256, 8
SIGMA_MIN = 0.11  # CompressAI's lower bound on a Gaussian conditional's scale


def eb_likelihood(model: EntropyBottleneck, v: torch.Tensor) -> torch.Tensor:
    """Likelihood (B, C, H, W) of the unit bins centred on ``v`` (B, C, H, W)."""
    b, c, h, w = v.shape
    lik, _, _ = model._likelihood(v.permute(1, 0, 2, 3).reshape(c, 1, -1))
    return lik.reshape(c, b, h, w).permute(1, 0, 2, 3)


class MeanScaleHyperprior(nn.Module):
    """h_a, h_s and z's factorized prior over fixed integer symbols q (B, M, h, w)."""

    def __init__(self, m: int = 64, n: int = Z_CHANNELS):
        super().__init__()
        self.h_a = nn.Sequential(nn.Conv2d(m, n, 3, 1, 1), nn.LeakyReLU(inplace=True),
                                 nn.Conv2d(n, n, 5, 2, 2), nn.LeakyReLU(inplace=True),
                                 nn.Conv2d(n, n, 5, 2, 2))
        self.h_s = nn.Sequential(nn.ConvTranspose2d(n, n, 5, 2, 2, 1),
                                 nn.LeakyReLU(inplace=True),
                                 nn.ConvTranspose2d(n, n, 5, 2, 2, 1),
                                 nn.LeakyReLU(inplace=True), nn.Conv2d(n, 2 * m, 3, 1, 1))
        self.z_prior = EntropyBottleneck(n)

    def forward(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(bits of q given z, bits of z)."""
        z = self.h_a(q)
        z_tilde, z_lik = self.z_prior(z)
        if not self.training:
            medians = self.z_prior._get_medians().reshape(1, -1, 1, 1)
            z_tilde = torch.round(z - medians) + medians
            z_lik = eb_likelihood(self.z_prior, z_tilde)
        mu, s = self.h_s(z_tilde).chunk(2, 1)
        h, w = q.shape[-2:]
        gauss = torch.distributions.Normal(mu[..., :h, :w],
                                           F.softplus(s[..., :h, :w]) + SIGMA_MIN)
        lik = gauss.cdf(q + 0.5) - gauss.cdf(q - 0.5)
        return -torch.log2(lik.clamp_min(1e-9)).sum(), -torch.log2(z_lik.clamp_min(1e-9)).sum()


def project(results: str, probes: list[str]) -> None:
    from nicodec import metrics

    curves = {c["name"]: c for c in json.load(open(results))["curves"]}
    ratio = {}
    for path in probes:
        probe = json.load(open(path))
        domain = probe.get("domain", "photo")
        ratio[probe["quality"]] = {r["image"]: r["hyper_bpp"] / r["fact_bpp"]
                                   for r in probe["images"]}
    real, projected = [], []
    for q, point in enumerate(curves[f"nicodec:{domain}"]["points"], start=1):
        imgs = point["images"]
        psnr = float(np.mean([i["psnr"] for i in imgs]))
        real.append((float(np.mean([i["bpp"] for i in imgs])), psnr))
        projected.append((float(np.mean([i["bpp"] * ratio[q][i["image"]] for i in imgs])), psnr))
    for q, (r, p) in enumerate(zip(real, projected), start=1):
        print(f"q{q}: {r[0]:.4f} -> {p[0]:.4f} bpp ({100 * (p[0] / r[0] - 1):+.1f} %) at {r[1]:.2f} dB")
    r, p = np.array(real), np.array(projected)
    print(f"hyperprior projection against {domain}'s own codec: "
          f"{metrics.bd_rate(r[:, 0], r[:, 1], p[:, 0], p[:, 1]):+.2f} % BD-rate")
    for name in ("jpeg2000", "webp"):
        c = np.array([(pt["bpp"], pt["psnr"]) for pt in curves[name]["points"]])
        print(f"against {name}: {domain} "
              f"{metrics.bd_rate(c[:, 0], c[:, 1], r[:, 0], r[:, 1]):+.2f} %, with the "
              f"hyperprior {metrics.bd_rate(c[:, 0], c[:, 1], p[:, 0], p[:, 1]):+.2f} %")


def trained_codec(reg: registry.Registry, domain: str, quality: int):
    """(network, its content ID): the newest base of ``quality`` (``photo``) or quality
    ``quality`` of the newest installed adaptation named ``domain``, as a trainable
    network (analysis and entropy model)."""
    if domain == "photo":
        entry = reg.find_base(quality=quality)
        return reg.base_network(entry), entry.id
    from nicodec import adapt

    meta = reg.find_package(domain)
    record = meta.qualities[quality]
    entry = next(b for b in reg.bases() if b.id == record.base_id)
    net = adapt.trainable(meta.method, reg.base_network(entry), meta.k,
                          bool(record.training.get("channel_affine")))
    adapt.load_start(net, meta.method, reg.package_tensors(meta), quality)
    return net.eval(), record.id


def main() -> None:
    if sys.argv[1] == "project":
        return project(sys.argv[2], sys.argv[3:])
    domain = "photo"
    if sys.argv[1] == "--domain":
        domain, sys.argv[1:] = sys.argv[2], sys.argv[3:]
    quality, steps, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    torch.manual_seed(0)
    reg = registry.Registry()
    net, model_id = trained_codec(reg, domain, quality)
    net.requires_grad_(False)
    eb = net.entropy_bottleneck
    medians = eb._get_medians().detach().reshape(1, -1, 1, 1)

    def symbols(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
            y = net.analysis(x)
        return torch.round(y.float() - medians)

    def factorized_bits(q: torch.Tensor) -> torch.Tensor:
        return -torch.log2(eb_likelihood(eb, q + medians).clamp_min(1e-9)).sum()

    hp = MeanScaleHyperprior(m=medians.shape[1])
    main_p = [p for n, p in hp.named_parameters() if not n.endswith("quantiles")]
    aux_p = [p for n, p in hp.named_parameters() if n.endswith("quantiles")]
    opt, aux = torch.optim.Adam(main_p, lr=1e-3), torch.optim.Adam(aux_p, lr=1e-3)
    sampler = data.CropSampler.from_files(data.list_images(data.split_dir(domain, "train")),
                                          crop=CROP)
    t0, acc, pixels = time.time(), [], BATCH * CROP * CROP
    for step in range(steps):
        if step == int(0.8 * steps):
            for g in opt.param_groups:
                g["lr"] = 3e-4
        q = symbols(torch.from_numpy(sampler.batch(BATCH)))
        hp.train()
        bits_y, bits_z = hp(q)
        bpp = (bits_y + bits_z) / pixels
        opt.zero_grad()
        bpp.backward()
        opt.step()
        aux_loss = hp.z_prior.loss()
        aux.zero_grad()
        aux_loss.backward()
        aux.step()
        with torch.no_grad():
            acc.append((bpp.item(), (factorized_bits(q) / pixels).item()))
        if (step + 1) % 250 == 0:
            a = np.mean(acc, 0)
            acc.clear()
            print(f"step {step + 1} hyper {a[0]:.4f} bpp  factorized {a[1]:.4f} bpp  "
                  f"({time.time() - t0:.0f} s)", flush=True)

    hp.eval()
    rows, flat = [], {}
    with torch.no_grad():
        for f in data.list_images(data.split_dir(domain, "test")):
            rgb = image.load(f).rgb
            h, w = rgb.shape[:2]
            x = pixels_to_tensor(rgb, "cpu")
            x = F.pad(x, (0, -x.shape[-1] % 64, 0, -x.shape[-2] % 64), mode="replicate")
            q = symbols(x)
            bits_y, bits_z = hp(q)
            row = {"image": f.name, "hyper_bpp": float((bits_y + bits_z) / (h * w)),
                   "z_bpp": float(bits_z / (h * w)),
                   "fact_bpp": float(factorized_bits(q) / (h * w))}
            rows.append(row)
            print(f"{f.name[:30]:>30}  factorized {row['fact_bpp']:.4f}  hyper "
                  f"{row['hyper_bpp']:.4f} (z {row['z_bpp']:.4f})  ratio "
                  f"{row['hyper_bpp'] / row['fact_bpp']:.3f}", flush=True)
        for grey in (0, 128, 255):
            q = symbols(torch.full((1, 3, 512, 512), grey / 255.0))
            bits_y, bits_z = hp(q)
            flat[grey] = (float(factorized_bits(q) / 512 ** 2),
                          float((bits_y + bits_z) / 512 ** 2))
        print("flat 512x512 (factorized, hyper):", flat)
    with open(out, "w") as fh:
        json.dump({"domain": domain, "quality": quality, "model": model_id, "steps": steps, "images": rows,
                   "flat": flat}, fh, indent=1)


if __name__ == "__main__":
    main()
