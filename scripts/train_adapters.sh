#!/usr/bin/env bash
# Trains the shipped CAwF adapters `astro` and `screen` of generation 2 (part of `make
# models`) on their domains' training sets, on the newest photo base models, in nicodec's
# default form (K=16 + channel affine), and records them in models/manifest.json. 0.1's
# adapters (models/astro.safetensors, models/screen.safetensors: the paper's form, 600 steps,
# on generation 1) stay shipped so that their files keep decoding.
set -euo pipefail
NIC=${NIC:-.venv/bin/nicodec}
STEPS=${ADAPT_STEPS:-600}
for domain in astro screen; do
  $NIC adapt "data/$domain/train" --name "$domain" --steps "$STEPS" --holdout 0.05 \
    -o "models/$domain-g2.safetensors"
done
