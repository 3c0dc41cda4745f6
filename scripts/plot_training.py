"""Plot the base models' training curves: test-set PSNR and bpp against steps, per quality.

    .venv/bin/python scripts/plot_training.py [runs/] [-o docs/results/training/curves.png]

Reads every ``<domain>-g<G>-q<Q>[-synthesis].curve.jsonl`` (written by ``nicodec train`` at
each checkpoint: the real bpp and PSNR of the test set through the codec) in the given
folders; the committed copies live in ``docs/results/training/``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


NAME = re.compile(r"(.+)-g(\d+)-q(\d+)(-synthesis)?$")
# Runs that continued the previous generation's main stage (its snapshot in
# models/training/wip/, before that generation's synthesis stage) and count their steps on
# from that run's start: generation 6's q4 starts at step 7,000 of generation 5's q4 run.
RESUMES_MAIN_STAGE = {"photo-g6-q4"}


def end(curves: dict, domain: str, gen: int, q: str) -> int:
    """The step at which generation ``gen``'s model of quality ``q`` was finished: its last
    stage's last step (0 where that generation has no curve here)."""
    for stage in (f"{domain}-g{gen}-q{q}-synthesis", f"{domain}-g{gen}-q{q}"):
        if stage in curves:
            return offset(curves, stage) + curves[stage][-1]["step"]
    return 0


def offset(curves: dict, name: str) -> int:
    """Steps before a run. Generation G > 2 of a quality continued generation G-1's model of
    that quality (models/training/README.md), so its steps count on from that model's last;
    a ``-synthesis`` stage continues its own generation's training run where there is one."""
    domain, gen, q, synthesis = NAME.match(name).groups()
    gen = int(gen)
    main_stage = f"{domain}-g{gen - 1}-q{q}"
    if (name in RESUMES_MAIN_STAGE and main_stage in curves):  # its steps count on from it
        return offset(curves, main_stage)
    if synthesis and f"{domain}-g{gen}-q{q}" in curves:
        full = f"{domain}-g{gen}-q{q}"
        return offset(curves, full) + curves[full][-1]["step"]
    return end(curves, domain, gen - 1, q) if gen > 2 else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="*", default=["docs/results/training"])
    ap.add_argument("-o", "--output", default="docs/results/training/curves.png")
    args = ap.parse_args()
    curves = {}
    for folder in args.folders:
        for path in sorted(Path(folder).glob("*.curve.jsonl")):
            if not NAME.match(path.stem.replace(".curve", "")):
                continue
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            by_step = {r["step"]: r for r in rows}  # a resumed run may repeat a step
            curves[path.stem.replace(".curve", "")] = [by_step[s] for s in sorted(by_step)]
    if not curves:
        raise SystemExit("no *.curve.jsonl found")
    fig, (ax_p, ax_b) = plt.subplots(1, 2, figsize=(13, 5.2))
    for name, rows in sorted(curves.items()):
        steps = [offset(curves, name) + r["step"] for r in rows]
        _, gen, q, synthesis = NAME.match(name).groups()
        gen, q = int(gen), int(q)
        style = {"color": f"C{q - 1}", "marker": "os^"[gen % 3], "ms": 3,
                 "ls": ":" if synthesis else "-" if gen % 2 == 0 else "--", "label": name}
        ax_p.plot(steps, [r["psnr"] for r in rows], **style)
        ax_b.plot(steps, [r["bpp"] for r in rows], **style)
    ax_p.set(xlabel="training step", ylabel="test-set PSNR (dB)", title="quality")
    ax_b.set(xlabel="training step", ylabel="test-set bpp", title="rate")
    for ax in (ax_p, ax_b):
        ax.grid(alpha=0.3)
    ax_b.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle("photo base models: test set through the real codec (a generation's run "
                 "continues the previous generation's model of its quality; dotted: "
                 "synthesis stages)")
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output} ({', '.join(sorted(curves))})")


if __name__ == "__main__":
    main()
