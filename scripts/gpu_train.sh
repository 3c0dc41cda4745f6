#!/usr/bin/env bash
# Trains the four photo base models of a new generation ($GEN) on a lent GPU machine (the
# `device` tool) in under 8 minutes of device time. Never needed: the same commands run on
# CPU, only slower.
#
#   scripts/gpu_train.sh prepare   # here, after `make data`: packs what travels (< 60 MiB)
#   device run, carry [".whl", "runs/gpu"], timeout_s 540:
#     bash scripts/gpu_train.sh run
#   then copy $OUT's model files into models/ with `nicodec train`'s manifest entries.
#
# What travels (49 MiB in all): the 301 training photos as 4:4:4 JPEG at quality 95 (44 MiB;
# 137 MB as PNG) and the test photos as PNG (runs/gpu/data), and wheels for the packages
# that machine lacks (.whl: compressai, constriction, platformdirs, pytorch-msssim for its
# Python 3.12).
set -euo pipefail
cd "$(dirname "$0")/.."
GEN=${GEN:-}                    # the generation it trains (exports photo-g$GEN-q*; default:
                               # the one after the newest in models/, as `nicodec train`)
INIT_GEN=${INIT_GEN:-5}        # the shipped generation whose q3 it starts from
STEPS_Q3=${STEPS_Q3:-30000}    # from the current q3, then each neighbour warm-started
STEPS_WARM=${STEPS_WARM:-12000}
STEPS_SYNTH=${STEPS_SYNTH:-3000}  # then every quality's synthesis stage
BATCH=${BATCH:-16}
# The main stages' distortion: psnr (the geometric mean of the crops' MSEs) won the q1 A/B
# of 0.5 (models/training/README.md); the synthesis stages stay on plain MSE.
DISTORTION=${DISTORTION:-psnr}
DEVICE=${DEVICE:-cuda}
# HYPERPRIOR=1: train the transforms together with their hyperprior (`--hyperprior`, rate
# of the rounded symbols), from a generation that has one, e.g.
#   HYPERPRIOR=1 INIT_GEN=7 bash scripts/gpu_train.sh run
# (each quality then starts from its own INIT_GEN file, which holds its hyperprior; see
# models/training/README.md, "0.15: transforms fine-tuned with their hyperprior", for why it
# needs long runs; generation 8 is 0.16's context model on generation 7)
HYPERPRIOR=${HYPERPRIOR:-}

prepare() {
  local py=.venv/bin/python
  rm -rf runs/gpu && mkdir -p runs/gpu/data/photo/train runs/gpu/data/photo/test
  $py - <<'PY'
from pathlib import Path
from PIL import Image
for f in sorted(Path("data/photo/train").glob("*.png")):
    Image.open(f).convert("RGB").save(Path("runs/gpu/data/photo/train") / (f.stem + ".jpg"),
                                      quality=95, subsampling=0)
PY
  cp data/photo/test/*.png runs/gpu/data/photo/test/
  mkdir -p .git/info; grep -qsx '/.whl/' .git/info/exclude || echo '/.whl/' >> .git/info/exclude
  rm -rf .whl && mkdir .whl
  for spec in compressai==1.2.8 constriction==0.5.0 platformdirs pytorch-msssim==1.0.0; do
    $py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 \
      --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d .whl "$spec"
  done
  du -sh runs/gpu .whl
}

run() {
  [ -n "${LOCAL:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD NICODEC_DATA=$PWD/runs/gpu/data PYTHONUNBUFFERED=1
  local out=${OUT:-runs/gpu/out} nic="python3 -m nicodec.cli"
  mkdir -p "$out/models"
  cp models/manifest.json "$out/models/"
  export NICODEC_MODELS=$out/models
  cp models/photo-q*.safetensors "$out/models/"
  GEN=${GEN:-$(python3 -c 'from nicodec import registry; print(registry.next_generation())')}
  local init=${INIT_Q3:-models/photo-g$INIT_GEN-q3.safetensors} g="$out/models/photo-g$GEN"
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
  if [ -n "$HYPERPRIOR" ]; then
    for q in 1 2 3 4; do
      time $nic train -q $q --steps "$STEPS_WARM" --batch "$BATCH" --device "$DEVICE" \
        --generation "$GEN" --init "models/photo-g$INIT_GEN-q$q.safetensors" --hyperprior \
        --mixed-quantization --lr "${LR:-1e-5}" --crop "${CROP:-256}" --runs "$out/runs" --ckpt-every 4000 \
        --distortion "$DISTORTION"
    done
    rm -f "$out"/models/photo-q*.safetensors
    return
  fi
  time $nic train -q 3 --steps "$STEPS_Q3" --batch "$BATCH" --init "$init" --device "$DEVICE" \
    --generation "$GEN" --runs "$out/runs" --ckpt-every 5000 --distortion "$DISTORTION"
  for q in 4 2; do
    time $nic train -q $q --steps "$STEPS_WARM" --batch "$BATCH" --device "$DEVICE" \
      --generation "$GEN" --init "$g-q3.safetensors" --runs "$out/runs" --ckpt-every 4000 \
      --distortion "$DISTORTION"
  done
  time $nic train -q 1 --steps "$STEPS_WARM" --batch "$BATCH" --device "$DEVICE" \
    --generation "$GEN" --init "$g-q2.safetensors" --runs "$out/runs" --ckpt-every 4000 \
    --distortion "$DISTORTION"
  for q in 1 2 3 4; do
    time $nic train -q $q --steps "$STEPS_SYNTH" --lr 1e-4 --lr-drop-at 0.6 --synthesis-only \
      --batch "$BATCH" --device "$DEVICE" --generation "$GEN" --init "$g-q$q.safetensors" \
      --runs "$out/runs" --ckpt-every 1000
  done
  rm -f "$out"/models/photo-q*.safetensors
}

"${1:?prepare or run}"
