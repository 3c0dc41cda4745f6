"""Plot the base models' training curves: test-set PSNR and bpp against steps, per quality.

    .venv/bin/python scripts/plot_training.py [runs/] [-o docs/results/training/curves.png]

Reads every ``<domain>-g<G>-q<Q>.curve.jsonl`` (written by ``nicodec train`` at each
checkpoint: the real bpp and PSNR of the test set through the codec) in the given folders;
the committed copies live in ``docs/results/training/``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="*", default=["docs/results/training"])
    ap.add_argument("-o", "--output", default="docs/results/training/curves.png")
    args = ap.parse_args()
    curves = {}
    for folder in args.folders:
        for path in sorted(Path(folder).glob("*.curve.jsonl")):
            m = re.match(r"(.+)-g(\d+)-q(\d+)\.curve$", path.stem)
            if not m:
                continue
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            by_step = {r["step"]: r for r in rows}  # a resumed run may repeat a step
            curves[path.stem.replace(".curve", "")] = [by_step[s] for s in sorted(by_step)]
    if not curves:
        raise SystemExit("no *.curve.jsonl found")
    fig, (ax_p, ax_b) = plt.subplots(1, 2, figsize=(11, 4))
    for name, rows in sorted(curves.items()):
        steps = [r["step"] for r in rows]
        ax_p.plot(steps, [r["psnr"] for r in rows], "o-", ms=3, label=name)
        ax_b.plot(steps, [r["bpp"] for r in rows], "o-", ms=3, label=name)
    ax_p.set(xlabel="training step", ylabel="test-set PSNR (dB)", title="quality")
    ax_b.set(xlabel="training step", ylabel="test-set bpp", title="rate")
    for ax in (ax_p, ax_b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("photo base models, generation 2: test set through the real codec")
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output} ({', '.join(sorted(curves))})")


if __name__ == "__main__":
    main()
