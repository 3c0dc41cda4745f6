#!/usr/bin/env bash
# Trains the shipped CAwF adapters `astro` and `screen` (part of `make models`) on their
# domains' training sets, on the newest photo base models (generation $GEN), in nicodec's
# default form (K=16 + channel affine), $ADAPT_STEPS steps per quality then $SYNTH_STEPS of
# the synthesis stage (--synthesis-steps), writes models/<domain>-g$GEN$SUFFIX.safetensors
# and records it in models/manifest.json. Older
# generations' adapters stay shipped so that their files keep decoding: 0.1's
# (models/astro.safetensors, models/screen.safetensors: the paper's form, 600 steps, on
# generation 1), generation 2's (astro-g2, screen-g2: 600 steps), generation 3's
# (astro-g3, screen-g3: 2,000 steps, GEN=3 SYNTH_STEPS=0), generation 4's (astro-g4,
# screen-g4: GEN=4) and the first of generation 5 (astro-g5, screen-g5: GEN=5 SUFFIX=
# ADAPT_STEPS=2000 SYNTH_STEPS=500). The defaults made 0.7's astro-g5-long and
# screen-g5-long; of two shipped adapters of one name on one base generation, encoding
# takes the one the manifest recorded last, the other keeps decoding its files.
# Then, unless CONTINUE=0, each is trained further from its weights (adapt --init, lr 2e-4:
# astro 6,000 + 1,500 steps, screen 4,000 + 1,000) into
# models/<domain>-g$GEN${SUFFIX}2.safetensors: how 0.8's astro-g5-long2 and
# screen-g5-long2 were made from 0.7's (about 80 minutes more, the two side by side).
# Then, unless CONTINUE3=0, each is trained further once more (adapt --init from 0.8's
# <domain>-g5-long2, lr 1e-4, 5,000 + 1,250 steps, --mixed-quantization) into
# models/<domain>-g6-long3.safetensors: 0.12's, whose q4 went on from generation 5's q4 base
# onto generation 6's (astro 31 minutes, screen 36, one after the other on 2 cores of an AMD
# EPYC with AVX512-BF16). That stage needs the two earlier ones (or the shipped
# <domain>-g5-long2) and generation 6.
# Then, unless GROW=0, astro grows from 16 to 32 custom filters per layer (adapt --init from
# 0.12's astro-g6-long3 with --custom-filters 32, lr 2e-4, 5,000 + 1,250 steps,
# --mixed-quantization) into models/astro-g6-k32.safetensors: 0.13's (about 55 minutes on 2
# cores of an AMD EPYC with AVX512-BF16).
# ADAPT_PARALLEL=1 trains the two at once, one thread each, logging to
# runs/adapt-<domain>-g$GEN$SUFFIX.out (how the shipped ones were made: about 2 hours
# for 8,000 + 2,000 steps on 2 cores with AMX-BF16).
set -euo pipefail
NIC=${NIC:-.venv/bin/nicodec}
GEN=${GEN:-5}
SUFFIX=${SUFFIX--long}
STEPS=${ADAPT_STEPS:-8000}
SYNTH=${SYNTH_STEPS:-2000}
declare -A MORE=([astro]="6000 1500" [screen]="4000 1000")
one() {
  $NIC adapt "data/$1/train" --name "$1" --steps "$STEPS" --synthesis-steps "$SYNTH" --holdout 0.05 \
    -o "models/$1-g$GEN$SUFFIX.safetensors"
  [ "${CONTINUE:-1}" = 1 ] || return 0
  local steps synth
  read -r steps synth <<< "${MORE[$1]}"
  $NIC adapt "data/$1/train" --name "$1" --init "models/$1-g$GEN$SUFFIX.safetensors" \
    --steps "$steps" --synthesis-steps "$synth" --lr 2e-4 --holdout 0.05 \
    -o "models/$1-g$GEN${SUFFIX}2.safetensors"
}
if [ "${ADAPT_PARALLEL:-0}" = 1 ]; then
  export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
  mkdir -p runs
  one astro > "runs/adapt-astro-g$GEN$SUFFIX.out" 2>&1 & a=$!
  one screen > "runs/adapt-screen-g$GEN$SUFFIX.out" 2>&1 & s=$!
  rc=0
  wait $a || rc=$?
  wait $s || rc=$?  # both finish even when one fails
  [ $rc = 0 ] || exit $rc
else
  for domain in astro screen; do one "$domain"; done
fi
if [ "${CONTINUE3:-1}" = 1 ]; then
  for domain in astro screen; do
    $NIC adapt "data/$domain/train" --name "$domain" --init "models/$domain-g5-long2.safetensors" \
      --steps 5000 --synthesis-steps 1250 --lr 1e-4 --holdout 0.05 --mixed-quantization \
      -o "models/$domain-g6-long3.safetensors"
  done
fi
if [ "${GROW:-1}" = 1 ]; then
  $NIC adapt data/astro/train --name astro --init models/astro-g6-long3.safetensors \
    --custom-filters 32 --steps 5000 --synthesis-steps 1250 --lr 2e-4 --holdout 0.05 \
    --mixed-quantization -o models/astro-g6-k32.safetensors
fi
