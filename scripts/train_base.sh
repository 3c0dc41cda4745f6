#!/usr/bin/env bash
# Trains the four `photo` base models of generation 2 (make models): q3 for 42,000 steps from
# the 0.1 q3 model, then 3,000-step warm starts: q4 and q2 from q3, q1 from q2. Every run
# resumes from runs/ when interrupted and ends by exporting photo-g2-qQ.safetensors to models/
# with its manifest entry. The shipped q2 and q4 started from q3's snapshot at step 34,000
# (runs/q3-34k.safetensors), not from its end: models/training/README.md has the exact chain
# of commands. Generation 1 (0.1's models) came from this script's 0.1 version.
set -euo pipefail
NIC=${NIC:-.venv/bin/nicodec}
STEPS=${STEPS:-42000}
WARM=${WARM:-3000}
$NIC train --domain photo -q 3 --steps "$STEPS" --lr 1e-4 --init models/photo-q3.safetensors
$NIC train --domain photo -q 4 --steps "$WARM" --lr 1e-4 --ckpt-every 1000 --init models/photo-g2-q3.safetensors
$NIC train --domain photo -q 2 --steps "$WARM" --lr 1e-4 --ckpt-every 1000 --init models/photo-g2-q3.safetensors
$NIC train --domain photo -q 1 --steps "$WARM" --lr 1e-4 --ckpt-every 1000 --init models/photo-g2-q2.safetensors
