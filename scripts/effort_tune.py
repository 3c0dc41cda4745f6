"""Tune the encoder's latent search (nicodec.effort) on training images, never the test set.

For each search setting (steps, method, learning rate) it encodes centre crops of a spread of
a domain's training images at every quality with the shipped codec of that domain, and
prints the BD-rate of the resulting curve against plain rounding (effort 1) and the encode
time per megapixel. The settings in ``effort.EFFORTS`` were chosen this way
(docs/results/effort-tuning.md):

    OMP_NUM_THREADS=1 python scripts/effort_tune.py astro \\
        --setting 40:0.05 --setting 40:0.02 --setting 120:0.015
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from nicodec import bench, data, effort, image, metrics, registry
from nicodec.effort import Effort


def centre_crop(rgb: np.ndarray, side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    y, x = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return np.ascontiguousarray(rgb[y:y + side, x:x + side])


def curve(codecs, imgs, level: int) -> tuple[list[tuple[float, float]], float]:
    """Mean (bpp, PSNR) per quality at an effort level, and encode seconds per megapixel."""
    points, s_per_mp, _ = bench.effort_curve(codecs, list(enumerate(imgs)), level)
    return [(p["bpp"], p["psnr"]) for p in points], s_per_mp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("domain", help="photo, or a shipped adapter's name (astro, screen)")
    ap.add_argument("--images", type=int, default=6, help="training images, spread over the list")
    ap.add_argument("--crop", type=int, default=256, help="centre crop side (0: whole images)")
    ap.add_argument("--setting", action="append", required=True,
                    help="STEPS:LR of a stochastic-Gumbel-annealing search, or STEPS:LR:fp32 "
                         "for its synthesis in float32 everywhere (repeatable)")
    ap.add_argument("--json", help="also write the curves here")
    args = ap.parse_args()

    files = data.list_images(data.split_dir(args.domain, "train"))
    chosen = files[::max(1, len(files) // args.images)][:args.images]
    imgs = [image.load(f).rgb for f in chosen]
    if args.crop:
        imgs = [centre_crop(rgb, args.crop) for rgb in imgs]
    reg = registry.Registry()
    codecs = [reg.codec(quality=q, domain=args.domain) for q in reg.qualities()]

    ref, s_per_mp = curve(codecs, imgs, 1)
    rows = [{"setting": "round", "points": ref, "bd_rate": 0.0, "s_per_mp": s_per_mp}]
    print(f"{args.domain}: {len(imgs)} images {[f.name for f in chosen]}")
    print(f"  round        BD-rate   0.00 %  {s_per_mp:6.1f} s/MP", flush=True)
    for i, setting in enumerate(args.setting):
        steps, lr, *precision = setting.split(":")
        level = 1000 + i  # a private level, never a user's
        effort.EFFORTS[level] = Effort(level, int(steps), "sga", float(lr),
                                       bf16=precision != ["fp32"])
        points, s_per_mp = curve(codecs, imgs, level)
        bd = metrics.bd_rate([p[0] for p in ref], [p[1] for p in ref],
                             [p[0] for p in points], [p[1] for p in points])
        rows.append({"setting": setting, "points": points, "bd_rate": bd, "s_per_mp": s_per_mp})
        print(f"  {setting:12s} BD-rate {bd:+6.2f} %  {s_per_mp:6.1f} s/MP  "
              + " ".join(f"{b:.4f}/{p:.2f}" for b, p in points), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"domain": args.domain, "images": [f.name for f in chosen],
                       "crop": args.crop, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
