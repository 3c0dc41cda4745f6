#!/usr/bin/env bash
# nicodec as a new user meets it: photos and screenshots that no training or test set here
# has seen, against JPEG 2000 and WebP as their users run them (see `nicodec eval --help`).
#
#   scripts/independent_eval.sh            (about 15 minutes on 2 cores; writes
#                                           docs/results/independent-*.json)
#
# The images come from three Debian packages that the data rules reserve for this
# independent evaluation (never for training or testing, see nicodec/data.py):
#   photos:      the 21 colour photographs among OpenCV's sample data (opencv-doc) and
#                libjxl's flower (libjxl-testdata);
#   screenshots: the first 20 English screenshots of KStars' handbook (kstars-data).
# Images are scaled (Lanczos) so that the longer side is at most 1024 pixels, as the
# training and test photos are to 768.
set -euo pipefail
NIC=${NIC:-.venv/bin/nicodec}
PY=${PY:-.venv/bin/python}
DIR=${DIR:-data/independent}
OUT=${OUT:-docs/results}
mkdir -p "$DIR/debs"
for p in opencv-doc libjxl-testdata kstars-data; do
  ls "$DIR/debs/${p}"_*.deb >/dev/null 2>&1 || (cd "$DIR/debs" && apt-get download -q "$p")
  [ -d "$DIR/pkgs/$p" ] || { mkdir -p "$DIR/pkgs"; dpkg-deb -x "$DIR"/debs/"${p}"_*.deb "$DIR/pkgs/$p"; }
done
"$PY" - "$DIR" <<'EOF'
import shutil
import sys
from pathlib import Path
from PIL import Image

root = Path(sys.argv[1])
cv = root / "pkgs/opencv-doc/usr/share/doc/opencv-doc/examples/data"
jxl = root / "pkgs/libjxl-testdata/usr/share/libjxl-testdata"
kst = root / "pkgs/kstars-data/usr/share/doc/HTML/en/kstars"
# OpenCV's colour photographs of at least 256 pixels a side, one of each stereo or
# sequence pair (not aloeR, leuvenB, graf3, right, rubberwhale2), without renders
# (Blender_Suzanne*), drawings (pic*, ml), a painting (starry_night), a printed page
# (sudoku) and the deliberately blurred text_*
photos = [cv / n for n in (
    "aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "board.jpg",
    "building.jpg", "butterfly.jpg", "ela_original.jpg", "fruits.jpg", "graf1.png",
    "home.jpg", "left.jpg", "leuvenA.jpg", "messi5.jpg", "orange.jpg", "pca_test1.jpg",
    "rubberwhale1.png", "smarties.png", "squirrel_cls.jpg", "stuff.jpg")]
photos.append(jxl / "jxl/flower/flower.png")  # (raw.pixls' photos are 64 x 64 crops)
screens = sorted(kst.glob("*.png"))[:20]
for name, files in (("photos", photos), ("screens", screens)):
    out = root / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    for f in files:
        with Image.open(f) as im:
            im = im.convert("RGB")
            scale = 1024 / max(im.size)
            if scale < 1:
                im = im.resize((round(im.width * scale), round(im.height * scale)),
                               Image.Resampling.LANCZOS)
            im.save(out / (f.stem + ".png"))
    print(f"{name}: {len(files)} images in {out}")
EOF
"$NIC" eval "$DIR/photos" --baselines jpeg2000,webp --json "$OUT/independent-photos.json"
"$NIC" eval "$DIR/screens" --domain photo --domain screen --baselines jpeg2000,webp \
  --json "$OUT/independent-screens.json"
