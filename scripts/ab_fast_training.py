"""A/B of the fast training path against fp32: same start (the 0.1 q3 model), same seed,
same crops and steps; final training loss and test-set bpp/PSNR of each.

    .venv/bin/python scripts/ab_fast_training.py [--steps 1500] [--out docs/results/...]

Writes docs/results/fast-training-ab.json. Needs `make data`.
"""

import argparse
import json
import time
from pathlib import Path

import torch

from nicodec import data, image, modelfile, registry
from nicodec.basetrain import snapshot_codec
from nicodec.evaluate import codec_point
from nicodec.network import FactorizedPrior
from nicodec.inference import bf16_is_fast
from nicodec.train import TrainConfig, fast_settings, load_model_tensors, train


def run(fast: bool, steps: int, window: int) -> dict:
    tensors, _ = modelfile.load(registry.REPO_MODELS / "photo-q3.safetensors")
    model = FactorizedPrior()
    load_model_tensors(model, modelfile.split_tables(tensors)[0], prefix="")
    sampler = data.CropSampler.from_files(data.list_images(data.split_dir("photo", "train")))
    cfg = TrainConfig(lam=0.016, steps=steps, lr=1e-4, fast=fast, compile=fast,
                      log_every=window, ckpt_every=window)
    losses = []
    t0 = time.time()
    train(model, sampler, cfg, console_log=False,
          on_checkpoint=lambda m, step, stats: losses.append((step, stats["loss"])))
    seconds = time.time() - t0
    codec, _ = snapshot_codec(model, 3, 0.016)
    tests = [(f.name, image.load(f).rgb)
             for f in data.list_images(data.split_dir("photo", "test"))]
    point = codec_point(codec, tests, "test", with_ms_ssim=False)
    fmt, dtype, compiled = fast_settings(cfg, "cpu", steps)
    return {"fast": fast, "channels_last": fmt == torch.channels_last,
            "bf16_transforms": dtype is not None, "compile": compiled,
            "loss_by_window": losses, "final_loss": losses[-1][1],
            "test_bpp": point["bpp"], "test_psnr": point["psnr"], "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--window", type=int, default=500, help="steps per averaged loss")
    ap.add_argument("--out", default="docs/results/fast-training-ab.json")
    args = ap.parse_args()
    rows = [run(False, args.steps, args.window), run(True, args.steps, args.window)]
    result = {"steps": args.steps, "bf16_units": bf16_is_fast("cpu"), "runs": rows,
              "loss_difference": rows[1]["final_loss"] - rows[0]["final_loss"],
              "psnr_difference_db": rows[1]["test_psnr"] - rows[0]["test_psnr"],
              "bpp_difference": rows[1]["test_bpp"] - rows[0]["test_bpp"]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for r in rows:
        print(f"{'fast' if r['fast'] else 'fp32'}: final loss {r['final_loss']:.4f}, test "
              f"{r['test_bpp']:.4f} bpp {r['test_psnr']:.2f} dB ({r['seconds']:.0f} s)")
    print(f"fast - fp32: loss {result['loss_difference']:+.4f}, PSNR "
          f"{result['psnr_difference_db']:+.3f} dB, bpp {result['bpp_difference']:+.4f}")


if __name__ == "__main__":
    main()
