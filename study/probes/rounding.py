"""Where do the screen->astro CAwF seeds that miss lose? A probe of one quality.

From the study's cached jobs (runs/experiments):

0. a common ruler for both astro pairs: BD-PSNR on astro of the 7 naive and 7 CAwF jobs from
   photo and from screen, all against the photo codec's astro curve;

and at quality QUALITY:

1. per-image PSNR and bpp on the astro test set of the 7 naive and 7 CAwF screen->astro jobs;
2. on the test image whose PSNR spreads most across the CAwF seeds: the latent channel whose
   rounding alone costs the most there with the seed that does worst on it, and per CAwF
   seed its
   quantization centre (the adapter's density median), the channel's latent percentiles on
   that image, how far a +0.1 shift of the channel moves the decoded image's mean, and the
   image's PSNR with that one centre moved by -0.5..+0.5;
3. the CAwF jobs of STE_SEEDS retrained at that quality with the synthesis fed the rounded
   latents (straight-through gradient; ``TrainConfig.round_for_synthesis``), in
   runs/probe-rounding/, which reuses the study's t1 codecs through symlinks.

Usage: .venv/bin/python -m study.probes.rounding QUALITY STE_SEEDS OUT.json
(STE_SEEDS comma-separated).
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

from nicodec.codec import pixels_to_tensor, tensor_to_pixels
from nicodec.data import REPO_ROOT
from nicodec.evaluate import codec_point
from study.engine import SEEDS, Job, Lab, Scale, t1_job
from study.sections import bd
from nicodec.metrics import psnr

STUDY = REPO_ROOT / "runs" / "experiments"
SRC, TGT = "screen", "astro"
OFFSETS = [round(x, 1) for x in np.linspace(-0.5, 0.5, 11)]


def common_ruler(lab: Lab) -> dict:
    """BD-PSNR (dB) on astro against the photo codec, per source, method and seed."""
    ref = lab.t1_curve("photo", TGT)
    table = {}
    for src in ("photo", SRC):
        for method in ("naive", "cawf"):
            gains = [bd(ref, lab.job_curve(Job(method, src, (TGT,), seed=s), TGT))["bd_psnr"]
                     for s in range(SEEDS)]
            table[f"{method} {src}->{TGT}"] = {
                "per_seed": [round(g, 3) for g in gains], "mean": float(np.mean(gains)),
                "se": float(np.std(gains, ddof=1) / np.sqrt(len(gains)))}
            print(f"{method} {src}->{TGT}: {np.mean(gains):+.2f} ± "
                  f"{np.std(gains, ddof=1) / np.sqrt(len(gains)):.2f} dB BD-PSNR vs the photo "
                  f"codec (mean ± se); per seed {np.round(gains, 2)}", flush=True)
    return table


def point(lab: Lab, job: Job, quality: int) -> dict:
    p = codec_point(lab.codec(job, quality), lab.tests(TGT), job.name, with_ms_ssim=False)
    return {"bpp": p["bpp"], "psnr": p["psnr"],
            "per_image_psnr": [round(i["psnr"], 3) for i in p["images"]]}


@torch.no_grad()
def decode_with(codec, rgb: np.ndarray, centre: torch.Tensor) -> np.ndarray:
    """Round the latents of ``rgb`` around ``centre`` (C,) and decode them, as the codec does."""
    y = codec.net.analysis(pixels_to_tensor(rgb, "cpu"))
    c = centre[None, :, None, None]
    return tensor_to_pixels(codec.net.synthesis(torch.round(y - c) + c), *rgb.shape[:2])


@torch.no_grad()
def costliest_channel(codec, rgb: np.ndarray) -> int:
    """The latent channel whose rounding alone (others unrounded) costs the most PSNR."""
    y = codec.net.analysis(pixels_to_tensor(rgb, "cpu"))
    c = codec.median
    y_round = torch.round(y - c) + c
    h, w = rgb.shape[:2]
    cost = []
    for ch in range(y.shape[1]):
        mixed = y.clone()
        mixed[:, ch] = y_round[:, ch]
        cost.append(-psnr(rgb, tensor_to_pixels(codec.net.synthesis(mixed), h, w)))
    return int(np.argmax(cost))


@torch.no_grad()
def channel_detail(codec, rgb: np.ndarray, ch: int) -> dict:
    y = codec.net.analysis(pixels_to_tensor(rgb, "cpu"))
    shifted = y.clone()
    shifted[:, ch] += 0.1
    h, w = rgb.shape[:2]
    mean_shift = float((codec.net.synthesis(shifted) - codec.net.synthesis(y)).mean()) * 255
    centre = codec.coder.median.clone()
    sweep = []
    for off in OFFSETS:
        moved = centre.clone()
        moved[ch] += off
        sweep.append([off, round(psnr(rgb, decode_with(codec, rgb, moved)), 3)])
    return {"centre": round(float(centre[ch]), 3),
            "latent_percentiles_5_25_50_75_95": [
                round(float(v), 3) for v in np.percentile(y[0, ch].numpy(), [5, 25, 50, 75, 95])],
            "decoded_mean_shift_per_0.1": round(mean_shift, 3),
            "psnr_by_centre_offset": sweep}


def ste_lab() -> Lab:
    """A lab in runs/probe-rounding/ that trains with rounded latents into the synthesis."""
    work = REPO_ROOT / "runs" / "probe-rounding"
    (work / "eval").mkdir(parents=True, exist_ok=True)
    (work / "jobs").mkdir(parents=True, exist_ok=True)
    t1 = t1_job(SRC)
    for f in (STUDY / "jobs").glob(f"{t1.name}_*"):
        link = work / "jobs" / f.name
        if not link.exists():
            link.symlink_to(f)
    return Lab(Scale(), work, "cpu", train_options={"round_for_synthesis": True})


def main(quality, ste_seeds, out):
    quality = int(quality)
    lab = Lab(Scale(), STUDY, "cpu")
    tests = lab.tests(TGT)
    result = {"pair": f"{SRC}->{TGT}", "quality": quality, "scale": Scale().__dict__,
              "images": [name for name, _ in tests],
              "common_ruler_bd_psnr_vs_photo_codec": common_ruler(lab), "study": {}}
    for method in ("naive", "cawf"):
        result["study"][method] = {
            seed: point(lab, Job(method, SRC, (TGT,), seed=seed), quality)
            for seed in range(SEEDS)}
        for seed, p in result["study"][method].items():
            print(f"{method} seed {seed}: {p['bpp']:.4f} bpp, {p['psnr']:.2f} dB", flush=True)
    cawf = result["study"]["cawf"]
    spread = np.ptp([cawf[s]["per_image_psnr"] for s in cawf], axis=0)
    worst = int(np.argmax(spread))
    name, rgb = tests[worst]
    worst_seed = min(cawf, key=lambda s: cawf[s]["per_image_psnr"][worst])
    ch = costliest_channel(lab.codec(Job("cawf", SRC, (TGT,), seed=worst_seed), quality), rgb)
    result["worst_image"] = {"name": name, "cawf_psnr_spread": round(float(spread[worst]), 3),
                             "mean_level": round(float(rgb.mean()), 2), "worst_seed": worst_seed,
                             "channel": ch, "per_cawf_seed": {}}
    print(f"widest spread over CAwF seeds: {name} ({spread[worst]:.2f} dB, mean level "
          f"{rgb.mean():.1f} of 255); costliest channel to round with seed {worst_seed}: {ch}")
    for seed in range(SEEDS):
        d = channel_detail(lab.codec(Job("cawf", SRC, (TGT,), seed=seed), quality), rgb, ch)
        result["worst_image"]["per_cawf_seed"][seed] = d
        best = max(d["psnr_by_centre_offset"], key=lambda r: r[1])
        here = cawf[seed]["per_image_psnr"][worst]
        print(f"  seed {seed}: centre {d['centre']:.2f}, latent median "
              f"{d['latent_percentiles_5_25_50_75_95'][2]:.2f}, +0.1 moves the mean by "
              f"{d['decoded_mean_shift_per_0.1']:+.2f}; PSNR {here:.2f} dB, {best[1]:.2f} dB "
              f"with the centre moved {best[0]:+.1f}", flush=True)
    lab_ste = ste_lab()
    result["ste"] = {}
    for seed in [int(s) for s in ste_seeds.split(",")]:
        p = point(lab_ste, Job("cawf", SRC, (TGT,), seed=seed), quality)
        result["ste"][seed] = p
        study = cawf[seed]["per_image_psnr"][worst]
        print(f"CAwF seed {seed} trained with rounded latents into the synthesis: "
              f"{p['bpp']:.4f} bpp, {p['psnr']:.2f} dB; on {name}: "
              f"{p['per_image_psnr'][worst]:.2f} dB (study: {study:.2f})", flush=True)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:4])
