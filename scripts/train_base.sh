#!/usr/bin/env bash
# Trains the four `photo` base models (make models), generation by generation:
#   generation 2: q3 for 42,000 steps from the 0.1 q3 model (lr 1e-4), then 3,000-step warm
#     starts: q4 and q2 from q3, q1 from q2;
#   generation 3: each generation-2 model continued at a lower learning rate (q4 8,000 steps
#     at 5e-5, q3 6,000 at 3e-5, q2 6,000 and q1 5,000 at 5e-5; each drops to a third late in
#     its run);
#   generation 4: q4 continued 14,000 steps at 5e-5 (a third from 70 %); then every quality's
#     synthesis stage (--synthesis-only, 3,000 steps at 1e-4, a third from 60 %): the decoder
#     tuned on rounded latents, the encoder and entropy model frozen (q1-q3 on generation 3's
#     models, q4 on its own new model);
#   generation 5: each generation-4 model continued at 5e-5 on the crops' geometric-mean MSE
#     (--distortion psnr; q1 12,000 steps, q2 8,000, q3 and q4 7,000; a third from step
#     7,200, 7,200, 4,200, 4,200), then a synthesis stage (q1 3,000 steps, the others 2,000);
#   generation 6 (q4 alone): generation 5's q4 main stage (its snapshot at step 7,000 in
#     models/training/wip/) continued on the 301 training photos to step 19,000 at 3e-5 (a
#     third from 60 %), then to step 23,000 at 1e-5 (a third from 90 %); no synthesis stage;
#   generation 7 (0.14): a hyperprior on generations 5/6's latents, nicodec.hypertrain (its
#     commands are in the manifest; not repeated here);
#   generation 8 (0.16): generation 7's hyperprior + a context model (hypertrain --context,
#     4,000 steps a quality), GENERATIONS="8", from the shipped generation 7.
# Every run resumes from runs/ when interrupted and ends by exporting
# photo-gG-qQ.safetensors with its manifest entry (into $NICODEC_MODELS, below). The shipped generation-2 q2 and
# q4 started from q3's snapshot at step 34,000 (runs/q3-34k.safetensors), not from its end:
# models/training/README.md has the exact chain of commands. Generation 1 (0.1's models) came
# from this script's 0.1 version. GENERATIONS="3" retrains only generation 3 from the
# shipped generation 2 (GENERATIONS="4": generation 4 from the shipped generation 3; GENERATIONS="5": generation 5 from
# the shipped generation 4; GENERATIONS="6": generation 6's q4 from the committed snapshot).
set -euo pipefail
NIC=${NIC:-.venv/bin/nicodec}
PY=${PY:-.venv/bin/python}
STEPS=${STEPS:-42000}
WARM=${WARM:-3000}
GENERATIONS=${GENERATIONS:-2 3 4 5 6}
# Everything exports into a registry of its own, $NICODEC_MODELS (default runs/models-repro):
# links to the shipped models less the generations it makes again. No shipped model is
# replaced (`nicodec train` refuses to: files name them by ID); compare the IDs in its
# manifest.json with models/manifest.json's.
M=${NICODEC_MODELS:-runs/models-repro}
export NICODEC_MODELS=$M
$PY - "$M" $GENERATIONS <<'PY'
import json, os, sys
from pathlib import Path
out, gens = Path(sys.argv[1]), {int(g) for g in sys.argv[2:]}
if not (out / "manifest.json").exists():
    out.mkdir(parents=True, exist_ok=True)
    manifest = json.loads(Path("models/manifest.json").read_text())
    manifest["models"] = [e for e in manifest["models"]
                          if e.get("kind") != "base" or e.get("generation", 1) not in gens]
    for e in manifest["models"]:
        os.symlink(Path("models", e["file"]).resolve(), out / e["file"])
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
PY
for gen in $GENERATIONS; do
  case $gen in
    2)
      $NIC train --domain photo -q 3 --steps "$STEPS" --lr 1e-4 --generation 2 --init $M/photo-q3.safetensors
      $NIC train --domain photo -q 4 --steps "$WARM" --lr 1e-4 --ckpt-every 1000 --generation 2 --init $M/photo-g2-q3.safetensors
      $NIC train --domain photo -q 2 --steps "$WARM" --lr 1e-4 --ckpt-every 1000 --generation 2 --init $M/photo-g2-q3.safetensors
      $NIC train --domain photo -q 1 --steps "$WARM" --lr 1e-4 --ckpt-every 1000 --generation 2 --init $M/photo-g2-q2.safetensors
      ;;
    3)
      $NIC train --domain photo -q 4 --steps 8000 --lr 5e-5 --lr-drop-at 0.6 --generation 3 --init $M/photo-g2-q4.safetensors
      $NIC train --domain photo -q 3 --steps 6000 --lr 3e-5 --lr-drop-at 0.5 --generation 3 --init $M/photo-g2-q3.safetensors
      $NIC train --domain photo -q 2 --steps 6000 --lr 5e-5 --lr-drop-at 0.6 --generation 3 --init $M/photo-g2-q2.safetensors
      $NIC train --domain photo -q 1 --steps 5000 --lr 5e-5 --lr-drop-at 0.6 --generation 3 --init $M/photo-g2-q1.safetensors
      ;;
    4)
      $NIC train --domain photo -q 4 --steps 14000 --lr 5e-5 --lr-drop-at 0.7 --generation 4 --init $M/photo-g3-q4.safetensors
      for q in 1 2 3; do
        $NIC train --domain photo -q $q --steps 3000 --lr 1e-4 --lr-drop-at 0.6 --ckpt-every 1000 --generation 4 --synthesis-only --init $M/photo-g3-q$q.safetensors
      done
      $NIC train --domain photo -q 4 --steps 3000 --lr 1e-4 --lr-drop-at 0.6 --ckpt-every 1000 --generation 4 --synthesis-only --init $M/photo-g4-q4.safetensors
      ;;
    5)
      $NIC train --domain photo -q 1 --steps 12000 --lr 5e-5 --lr-drop-at 0.6 --generation 5 --init $M/photo-g4-q1.safetensors --distortion psnr
      $NIC train --domain photo -q 2 --steps 8000 --lr 5e-5 --lr-drop-at 0.9 --generation 5 --init $M/photo-g4-q2.safetensors --distortion psnr
      for q in 3 4; do
        $NIC train --domain photo -q $q --steps 7000 --lr 5e-5 --lr-drop-at 0.6 --generation 5 --init $M/photo-g4-q$q.safetensors --distortion psnr
      done
      $NIC train --domain photo -q 1 --steps 3000 --lr 1e-4 --lr-drop-at 0.6 --ckpt-every 1000 --generation 5 --synthesis-only --init $M/photo-g5-q1.safetensors
      for q in 2 3 4; do
        $NIC train --domain photo -q $q --steps 2000 --lr 1e-4 --lr-drop-at 0.6 --ckpt-every 1000 --generation 5 --synthesis-only --init $M/photo-g5-q$q.safetensors
      done
      ;;
    6)
      $NIC train --domain photo -q 4 --steps 19000 --lr 3e-5 --lr-drop-at 0.6 --generation 6 --init models/training/wip/photo-q4-psnr-main7000.safetensors --runs runs/g6b-q4 --distortion psnr
      $NIC train --domain photo -q 4 --steps 23000 --lr 1e-5 --lr-drop-at 0.9 --ckpt-every 1000 --generation 6 --runs runs/g6b-q4 --distortion psnr
      ;;
    8)
      for q in 1 2 3 4; do
        $PY -m nicodec.hypertrain --domain photo -q $q --steps 4000 --context --crops-per-image 1 --out runs/hp/photo-ctx-q$q
        $PY -m nicodec.hypertrain export runs/hp/photo-ctx-q$q.safetensors --generation 8 \
          --command "python -m nicodec.hypertrain --domain photo -q $q --steps 4000 --context --crops-per-image 1 --out runs/hp/photo-ctx-q$q && python -m nicodec.hypertrain export runs/hp/photo-ctx-q$q.safetensors --generation 8"
      done
      ;;
  esac
done
