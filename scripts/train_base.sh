#!/usr/bin/env bash
# Trains the four `photo` base models of generation 2 (make models). q3 continues from the
# 0.1 q3 model; each other lambda is warm-started from a trained neighbour. Every run resumes
# from runs/ (or from a committed snapshot: INIT_Q3=models/training/photo-g2-q3.safetensors)
# and ends by exporting photo-g2-qQ.safetensors to models/ with its manifest entry.
# Generation 1 (nicodec 0.1's models) was made by this script's 0.1 version: 8,000 steps for
# q3 and 2,000 for each neighbour at lr 3e-4 (see each manifest entry's command).
set -euo pipefail
NIC=${NIC:-.venv/bin/nicodec}
STEPS=${STEPS:-100000}
WARM=${WARM:-30000}
INIT_Q3=${INIT_Q3:-models/photo-q3.safetensors}
$NIC train --domain photo -q 3 --steps "$STEPS" --lr 1e-4 --init "$INIT_Q3"
$NIC train --domain photo -q 4 --steps "$WARM" --lr 1e-4 --init models/photo-g2-q3.safetensors
$NIC train --domain photo -q 2 --steps "$WARM" --lr 1e-4 --init models/photo-g2-q3.safetensors
$NIC train --domain photo -q 1 --steps "$WARM" --lr 1e-4 --init models/photo-g2-q2.safetensors
