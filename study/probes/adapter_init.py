"""Does the CAwF adapter's initialisation hold back its custom latent channels?

The adapter (nicodec.network.Adapter) starts its K custom latents at 0.1x the Kaiming scale
and gives them the narrowest base density, so that they cost almost nothing at the start.
This probe trains the Table 2 CAwF jobs again with two other starts and measures them the
way `make experiments` does (BD-rate and BD-PSNR on the target test set against the same
joint reference), plus the share of the coded bits that goes to the custom channels:

  study        the shipped initialisation (the study's own jobs, read from runs/experiments)
  full         custom latents at the full Kaiming scale (last custom conv x10)
  full+median  as full, and the custom densities start from the median-width base channel

Usage: .venv/bin/python -m study.probes.adapter_init VARIANT SRC TGT SEEDS OUT.json
(SEEDS comma-separated). Variants other than `study` train in runs/probe-init-<variant>/,
which reuses the study's non-CAwF jobs (the joint reference, t1 codecs) through symlinks.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

from nicodec.adapt import trainable
from nicodec.data import REPO_ROOT
from nicodec.entropy import TOTAL
from nicodec.inference import BlockKeys
from study.engine import Job, Lab, Scale
from study.sections import bd
from study.sections import joint_init

STUDY = REPO_ROOT / "runs" / "experiments"


def patched_trainable(variant: str):
    def build(method, base, k):
        net = trainable(method, base, k)
        if method != "cawf" or variant == "study":
            return net
        with torch.no_grad():
            net.adapter.block(BlockKeys.custom_filters(3)).mul_(10)  # undo the 0.1 of the last custom conv
            if variant == "full+median":
                n = base.n
                q = base.entropy_bottleneck.quantiles
                median = int(torch.argsort(q[:, 0, 2] - q[:, 0, 0])[n // 2])
                src = base.entropy_bottleneck.state_dict()
                for name, t in net.adapter.entropy_bottleneck.state_dict().items():
                    if name in src and t.dim() and t.shape[0] == n + k:
                        t[n:] = src[name][median]
        return net
    return build


def work_dir(variant: str) -> Path:
    if variant == "study":
        return STUDY
    work = REPO_ROOT / "runs" / f"probe-init-{variant}"
    for sub in ("jobs", "eval"):
        (work / sub).mkdir(parents=True, exist_ok=True)
        for f in (STUDY / sub).iterdir():
            link = work / sub / f.name
            if not f.name.startswith("cawf_") and not link.exists():
                link.symlink_to(f)
    return work


@torch.no_grad()
def custom_bit_share(codec, images) -> float:
    """Share of the coded bits (ideal, under the frozen tables) in the custom channels."""
    n_base = codec.net.base.n
    custom = total = 0.0
    for _, rgb in images:
        q = codec.latents(rgb)
        for c in range(q.shape[0]):
            idx, _ = codec.coder.symbols(c, q[c].reshape(-1))
            bits = float(-np.log2(codec.coder.freq[c][idx] / TOTAL).sum())
            total += bits
            custom += bits if c >= n_base else 0.0
    return custom / total


def main(variant, src, tgt, seeds, out):
    lab = Lab(Scale(), work_dir(variant), "cpu", build=patched_trainable(variant))
    ref = lab.job_curve(Job("joint", *joint_init((src, tgt))), tgt)
    rows = []
    for seed in [int(s) for s in seeds.split(",")]:
        job = Job("cawf", src, (tgt,), seed=seed)
        r = bd(ref, lab.job_curve(job, tgt))
        share = {q: custom_bit_share(lab.codec(job, q), lab.tests(tgt))
                 for q in lab.qualities}
        rows.append({"seed": seed, **r, "custom_bit_share": share})
        print(f"{variant} {src}->{tgt} seed {seed}: BD-rate {r['bd_rate']:+.2f} %, BD-PSNR "
              f"{r['bd_psnr']:+.3f} dB vs joint; custom share of bits "
              + ", ".join(f"q{q} {v:.3f}" for q, v in share.items()), flush=True)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"variant": variant, "pair": f"{src}->{tgt}",
                                     "scale": Scale().__dict__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:6])
