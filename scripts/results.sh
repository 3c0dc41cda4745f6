#!/usr/bin/env bash
# Regenerates docs/results/: RD numbers of the shipped codecs on each domain's test set
# (needs `make data`). Quoted in README.md.
set -euo pipefail
NIC=${NIC:-.venv/bin/nicodec}
mkdir -p docs/results
$NIC eval data/photo/test --domain all --baselines jpeg2000,webp,jpeg,jpeg444 \
  --json docs/results/photo.json --plot docs/results/photo.png
for domain in astro screen; do
  $NIC eval "data/$domain/test" --domain photo --domain "$domain" --baselines jpeg2000,webp,jpeg,jpeg444 \
    --json "docs/results/$domain.json" --plot "docs/results/$domain.png"
done
