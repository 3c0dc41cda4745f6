#!/usr/bin/env bash
# Trains the shipped CAwF adapters `astro` and `screen` (part of `make models`) on their
# domains' training sets, from the shipped photo base models, and records them in
# models/manifest.json. Needs `make data` and the base models. They are the paper's adapter
# (--no-channel-affine): they were trained before the channel affine became the default.
set -euo pipefail
NIC=${NIC:-.venv/bin/nicodec}
STEPS=${ADAPT_STEPS:-600}
for domain in astro screen; do
  $NIC adapt "data/$domain/train" --name "$domain" --no-channel-affine --steps "$STEPS" \
    --holdout 0.05 -o "models/$domain.safetensors"
done
