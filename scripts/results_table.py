"""Markdown tables of docs/results/{photo,astro,screen}.json and of the independent sets'
independent-{photos,screens}.json (scripts/independent_eval.sh): what README's Results quote.

    .venv/bin/python scripts/results_table.py [docs/results]

Per test set: bpp and PSNR of each nicodec curve per quality, then the BD-rate and BD-PSNR
of each nicodec curve against each baseline (the baseline is the reference: a positive
BD-rate means nicodec needs more bits for the same PSNR).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nicodec import metrics  # noqa: E402


def bd(ref: dict, test: dict) -> str:
    args = ([p["bpp"] for p in ref["points"]], [p["psnr"] for p in ref["points"]],
            [p["bpp"] for p in test["points"]], [p["psnr"] for p in test["points"]])
    out = []
    for fn, unit in ((metrics.bd_rate, "%"), (metrics.bd_psnr, "dB")):
        try:
            out.append(f"{fn(*args):+.2f} {unit}")
        except ValueError:
            out.append("n/a")
    return f"BD-rate {out[0]}, BD-PSNR {out[1]}"


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/results")
    for domain in ("photo", "astro", "screen", "independent-photos", "independent-screens"):
        path = folder / f"{domain}.json"
        if not path.exists():
            continue
        res = json.loads(path.read_text())
        ours = [c for c in res["curves"] if c["name"].startswith("nicodec")]
        base = [c for c in res["curves"] if not c["name"].startswith("nicodec")]
        what = "set, nobody trained on it" if domain.startswith("independent") else "test set"
        print(f"**{domain} {what}** ({res['images']} images)\n")
        head = " | ".join(f"{c['name'].split(':')[1]} bpp | {c['name'].split(':')[1]} PSNR"
                          for c in ours)
        print(f"| quality | {head} |")
        print("|---|" + "---|" * (2 * len(ours)))
        for i, p in enumerate(ours[0]["points"]):
            cells = " | ".join(f"{c['points'][i]['bpp']:.4f} | {c['points'][i]['psnr']:.2f}"
                               for c in ours)
            print(f"| {p['setting']} | {cells} |")
        print()
        for c in ours:
            for b in base:
                print(f"- {c['name']} against {b['name']}: {bd(b, c)}")
        for c in ours[1:]:
            print(f"- {c['name']} against {ours[0]['name']}: {bd(ours[0], c)}")
        print()


if __name__ == "__main__":
    main()
