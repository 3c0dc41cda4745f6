"""Probe: fine-tune a generation-7 photo model's transforms together with its hyperprior
(:class:`nicodec.network.JointCodec`), or the factorized model alone as a control, and put
the real test-set point (files encoded and decoded) in a JSON-lines file every 500 steps.

    .venv/bin/python scripts/probe_joint.py -q 4 --lr 1e-5 --steps 8000 --out runs/probe-joint-q4.jsonl
    .venv/bin/python scripts/probe_joint.py -q 4 --lr 3e-5 --steps 1000 --factorized --out ...

Crops 256 x 256, batch 4, the PSNR distortion as generations 5-7 trained, synthesis on
rounded latents; fast path without torch.compile; one thread. Results:
models/training/README.md, "0.15: transforms fine-tuned with their hyperprior".
"""

import argparse
import json
from pathlib import Path

import torch

from nicodec import basetrain, data, image, registry
from nicodec.data import CropSampler
from nicodec.evaluate import codec_point
from nicodec.network import FactorizedPrior, HyperPrior, JointCodec
from nicodec.train import TrainConfig, train

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("-q", "--quality", type=int, required=True)
ap.add_argument("--lr", type=float, required=True)
ap.add_argument("--steps", type=int, required=True)
ap.add_argument("--fp32", action="store_true", help="no bf16 autocast")
ap.add_argument("--noise-synthesis", action="store_true",
                help="the synthesis on noisy latents (default: rounded, straight-through)")
ap.add_argument("--noise-rate", action="store_true",
                help="the Gaussian rate of noisy symbols (default: of rounded ones)")
ap.add_argument("--factorized", action="store_true",
                help="the control: the factorized model alone (its own rate)")
ap.add_argument("--out", required=True)
a = ap.parse_args()
torch.set_num_threads(1)
reg = registry.Registry()
lam = reg.lambda_for(a.quality)
model = (FactorizedPrior() if a.factorized else
         JointCodec(FactorizedPrior(), HyperPrior(), rate_on_rounded=not a.noise_rate))
basetrain._init_weights(model, Path(f"models/photo-g7-q{a.quality}.safetensors"), lam)
sampler = CropSampler.from_files(data.list_images(data.split_dir("photo", "train")), crop=256)
tests = [(f.name, image.load(f).rgb) for f in data.list_images(data.split_dir("photo", "test"))]
out = open(a.out, "a")


def on_checkpoint(m, step, stats):
    codec, _ = basetrain.snapshot_codec(m, a.quality, lam)
    p = codec_point(codec, tests, f"step {step}", with_ms_ssim=False)
    out.write(json.dumps({"step": step, "bpp": p["bpp"], "psnr": p["psnr"]}) + "\n")
    out.flush()


cfg = TrainConfig(lam=lam, steps=a.steps, batch=4, crop=256, lr=a.lr, lr_drop_at=1.0,
                  fast=not a.fp32, compile=False, ckpt_every=500, distortion="psnr",
                  round_for_synthesis=not a.noise_synthesis)
train(model, sampler, cfg, console_log=False, on_checkpoint=on_checkpoint)
