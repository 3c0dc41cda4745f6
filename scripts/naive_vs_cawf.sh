#!/usr/bin/env bash
# CAwF against naive fine tuning with the same data and steps as the shipped adapters
# (scripts/train_adapters.sh): trains naive-<domain> into runs/ (git-ignored; skipped when
# present), then evaluates base, shipped adapter and naive codec on the domain's test set
# into docs/results/<domain>-naive.{json,png}. Needs `make data` and the shipped models.
set -euo pipefail
NIC=${NIC:-.venv/bin/nicodec}
STEPS=${ADAPT_STEPS:-600}
export NICODEC_HOME=${NICODEC_HOME:-runs/naive-home}
for domain in ${DOMAINS:-astro screen}; do
  pkg="runs/naive-$domain.safetensors"
  [ -f "$pkg" ] || $NIC adapt "data/$domain/train" --name "naive-$domain" --method naive \
    --steps "$STEPS" --holdout 0.05 -o "$pkg"
  [ -f "$NICODEC_HOME/adapters/naive-$domain.safetensors" ] || $NIC models import "$pkg"
  $NIC eval "data/$domain/test" --domain photo --domain "$domain" --domain "naive-$domain" \
    --json "docs/results/$domain-naive.json" --plot "docs/results/$domain-naive.png"
done
