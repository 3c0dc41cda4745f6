#!/usr/bin/env bash
# Trains the shipped CAwF adapters `astro` and `screen` (part of `make models`) on their
# domains' training sets, on the newest photo base models (generation $GEN), in nicodec's
# default form (K=16 + channel affine), $ADAPT_STEPS steps per quality then $SYNTH_STEPS of
# the synthesis stage (--synthesis-steps), and records them in models/manifest.json. Older
# generations' adapters stay shipped so that their files keep decoding: 0.1's
# (models/astro.safetensors, models/screen.safetensors: the paper's form, 600 steps, on
# generation 1), generation 2's (astro-g2, screen-g2: 600 steps), generation 3's
# (astro-g3, screen-g3: 2,000 steps, GEN=3 SYNTH_STEPS=0) and generation 4's (astro-g4,
# screen-g4: GEN=4, the recipe generation 5's used too).
# ADAPT_PARALLEL=1 trains the two at once, one thread each, logging to
# runs/adapt-<domain>-g$GEN.out (how the shipped ones were made).
set -euo pipefail
NIC=${NIC:-.venv/bin/nicodec}
GEN=${GEN:-5}
STEPS=${ADAPT_STEPS:-2000}
SYNTH=${SYNTH_STEPS:-500}
one() {
  $NIC adapt "data/$1/train" --name "$1" --steps "$STEPS" --synthesis-steps "$SYNTH" --holdout 0.05 \
    -o "models/$1-g$GEN.safetensors"
}
if [ "${ADAPT_PARALLEL:-0}" = 1 ]; then
  export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
  mkdir -p runs
  one astro > "runs/adapt-astro-g$GEN.out" 2>&1 & a=$!
  one screen > "runs/adapt-screen-g$GEN.out" 2>&1 & s=$!
  rc=0
  wait $a || rc=$?
  wait $s || rc=$?  # both finish even when one fails
  exit $rc
else
  for domain in astro screen; do one "$domain"; done
fi
