"""What a quantisation step chosen per image would buy the photo test set (a probe).

    .venv/bin/python scripts/probe_step.py OUT.json [STEPS...]

The codec quantises every latent on the unit grid, ``q = round(y - median)``. A finer step
``s`` (``q_s = round((y - median) / s)``, decoded as ``s * q_s + median``) spends more bits
for less distortion. A format that let the encoder pick ``s`` per image would move each
image along its own curve. For each test photo, quality and step this measures the ideal
bits under the newest generation's hyperprior and context (the Gaussians of ``y`` scaled to
the step's grid; the side information from ``h_a`` of the dequantised latents; the context
fed ``round(s * q_s)``), z included, and the PSNR of the decoded pixels; then the test set's
mean curve when each image takes (a) the step with the least ``R + lambda * D`` (the codec's
own training objective) and (b) the step that gains most mean PSNR at the mean curve's slope.
"""

from __future__ import annotations

import json
import sys
from statistics import NormalDist

import numpy as np
import torch

from nicodec import data, image, metrics, registry
from nicodec.codec import tensor_to_pixels
from nicodec.hyperprior import MEAN_STEPS, scales


def ideal_bits(coder, v: np.ndarray, s: float) -> float:
    """-log2 P of ``q_s`` (``v = s * q_s``, around the medians) plus z's bits."""
    zq = coder.side(v)
    shift, table = coder.tables(np.round(v).astype(np.int32), zq)
    sig = scales()[table // MEAN_STEPS]
    mean = shift + (table % MEAN_STEPS) / MEAN_STEPS
    cdf = np.vectorize(NormalDist().cdf)
    hi, lo = cdf((v + s / 2 - mean) / sig), cdf((v - s / 2 - mean) / sig)
    return float(-np.log2(np.clip(hi - lo, 1e-9, None)).sum() + coder.z_coder.ideal_bits(zq))


def main() -> None:
    out = sys.argv[1]
    steps = [float(a) for a in sys.argv[2:]] or [1.0, 0.84, 0.71, 0.59, 0.5]
    reg = registry.Registry()
    files = data.list_images(data.split_dir("photo", "test"))
    rows = []
    for entry in reg.base_set():
        codec = reg.codec(quality=entry.quality)
        for f in files:
            rgb = image.load(f).rgb
            h, w = rgb.shape[:2]
            with torch.no_grad():
                r = codec.residual(rgb)[0].numpy()
                for s in steps:
                    v = (s * np.round(r / s)).astype(np.float32)
                    y_hat = torch.from_numpy(v)[None] + codec.median
                    px = tensor_to_pixels(codec.net.synthesis(y_hat), h, w)
                    rows.append({"quality": entry.quality, "image": f.name, "step": s,
                                 "bpp": ideal_bits(codec.coder, v, s) / (h * w),
                                 "psnr": metrics.psnr(rgb, px),
                                 "mse": float(np.mean((rgb.astype(np.float64) - px) ** 2))})
            print(json.dumps(rows[-len(steps):]), flush=True)
    json.dump({"rows": rows, "lambdas": {e.quality: e.lam for e in reg.base_set()}},
              open(out, "w"), indent=1)



def analyse(path: str,  # PROBE.json[,PROBE2.json...]
            results: str = "docs/results/photo.json") -> None:
    """The mean curves of (a) and (b) against one step for all, with each image's ideal
    bits scaled to its real file size at step 1 (``results``: the shipped codec's
    ``nicodec eval`` of the test set), and BD-rates against the classic codecs there."""
    from nicodec.metrics import bd_rate

    probes = [json.load(open(p)) for p in path.split(",")]
    rows = [r for p in probes for r in p["rows"]]
    lambdas = {int(k): v for k, v in probes[0]["lambdas"].items()}
    ev = json.load(open(results))
    curves = {c["name"]: c for c in ev["curves"]}
    ours = curves["nicodec:photo"]
    real = {(int(p["setting"][1:]), i["image"]): i["bpp"] for p in ours["points"]
            for i in p["images"]}
    by = {}
    for r in rows:
        by.setdefault((r["quality"], r["image"]), []).append(r)
    for cands in by.values():
        ratio = real[cands[0]["quality"], cands[0]["image"]] / next(
            c["bpp"] for c in cands if c["step"] == 1.0)
        for c in cands:
            c["real_bpp"] = c["bpp"] * ratio
    qs = sorted({q for q, _ in by})

    def curve(pick) -> tuple[list, list, dict]:
        bpp, psnr, chosen = [], [], {}
        for q in qs:
            picks = [pick(q, cands) for (qq, _), cands in sorted(by.items()) if qq == q]
            bpp.append(np.mean([p["real_bpp"] for p in picks]))
            psnr.append(np.mean([p["psnr"] for p in picks]))
            chosen[q] = [p["step"] for p in picks]
        return bpp, psnr, chosen

    one = curve(lambda q, c: next(x for x in c if x["step"] == 1.0))
    slope = np.gradient(one[1], one[0])  # dB per bpp along the one-step curve
    # the training loss: bpp + lambda * 255^2 * MSE on [0, 1] pixels = lambda * MSE on 0..255
    rd = curve(lambda q, c: min(c, key=lambda x: x["real_bpp"] + lambdas[q] * x["mse"]))
    mean_psnr = curve(lambda q, c: max(c, key=lambda x: x["psnr"] -
                                       slope[qs.index(q)] * x["real_bpp"]))
    for name in ("jpeg2000", "webp"):
        c = curves.get(name)
        if c is None:
            continue
        ref = ([p["bpp"] for p in c["points"]], [p["psnr"] for p in c["points"]])
        for label, cur in (("one step", one), ("R + lambda D", rd), ("mean PSNR", mean_psnr)):
            print(f"{label:>13} vs {name}: {bd_rate(*ref, cur[0], cur[1]):+.2f} %")
    for label, cur in (("R + lambda D", rd), ("mean PSNR", mean_psnr)):
        print(f"{label}: {bd_rate(one[0], one[1], cur[0], cur[1]):+.2f} % against one step; "
              + "; ".join(f"q{q} {b:.4f}/{p:.2f} steps {cur[2][q]}"
                          for q, b, p in zip(qs, cur[0], cur[1])))


if __name__ == "__main__" and sys.argv[1:2] == ["analyse"]:
    analyse(*sys.argv[2:])
elif __name__ == "__main__":
    main()
