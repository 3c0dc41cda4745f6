#!/usr/bin/env bash
# Trains the four shipped `photo` base models (make models). Each lambda is warm-started
# from a trained neighbour; every run resumes from runs/ and ends by exporting to models/.
set -euo pipefail
NIC=${NIC:-.venv/bin/nicodec}
STEPS=${STEPS:-6000}
WARM=${WARM:-2000}
$NIC train --domain photo -q 3 --steps "$STEPS"
$NIC train --domain photo -q 4 --steps "$WARM" --init models/photo-q3.safetensors
$NIC train --domain photo -q 2 --steps "$WARM" --init models/photo-q3.safetensors
$NIC train --domain photo -q 1 --steps "$WARM" --init models/photo-q2.safetensors
# q3 then continues to the same total length as its neighbours (resumes from runs/)
$NIC train --domain photo -q 3 --steps $((STEPS + WARM))
