"""``python -m study`` (``make experiments``): run every section and write the results."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


from nicodec.baselines import SETTINGS
from nicodec.data import REPO_ROOT
from nicodec.errors import NicodecError
from nicodec.registry import pick_device
from study.engine import Lab, SEEDS, Scale, TABLE1_PAIRS, TABLE2_PAIRS
from study.sections import adapter_size, catastrophic, lr_sweep, parameters, seeds, table1, table2
from study.figures import figure3, figure4
from study.rebaseline import rebaseline
from study.report import markdown, summary

SECTIONS = ("table2-photo", "catastrophic", "adapter-size", "table2-domains", "table1",
            "lr-sweep", "seeds")


def write_results(results: dict, out: Path) -> None:
    """experiments.json, summary.json and experiments_tables.md in ``out``."""
    for name, text in (("experiments.json", json.dumps(results, indent=1)),
                       ("summary.json", json.dumps(summary(results), indent=1)),
                       ("experiments_tables.md", markdown(results))):
        tmp = out / (name + ".tmp")
        tmp.write_text(text)
        tmp.replace(out / name)


def rebaseline_results(out: Path, work: Path, device: str, log=print) -> dict:
    """Measure the JPEG 2000 rows of ``out/experiments.json`` again (see
    :mod:`study.rebaseline`) at the scale they were run at, and rewrite the results and
    Figure 3. Trains nothing."""
    path = out / "experiments.json"
    if not path.exists():
        raise NicodecError(f"no study results in {out}: run 'make experiments' first")
    results = json.loads(path.read_text())
    fields = {k: v for k, v in results["scale"].items() if k != "device"}
    lab = Lab(Scale(**fields), work, device, log)
    new = rebaseline(results, lab)
    for t in new.get("table2", []):
        a, b = t["pair"].split("->")
        figure3(t, out / f"fig3_{a}-{b}.png")
    write_results(new, out)
    log(f"JPEG 2000 rows measured again with: {SETTINGS['jpeg2000']}")
    return new


def run(scale: Scale, work: Path, out: Path, device: str, sections=SECTIONS,
        log=print, only_pairs: set[str] | None = None, seed_count: int = SEEDS) -> dict:
    """Run ``sections`` in order, writing results to ``out`` after each; ``only_pairs``
    (e.g. {"astro->screen"}) restricts the pair-wise sections to those pairs;
    ``seed_count`` is how many seeds the seeds section trains per pair."""
    lab = Lab(scale, work, device, log)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    results = {"scale": {**scale.__dict__, "device": device}, "parameters": parameters()}

    def write():
        results["seconds"] = round(time.time() - t0, 1)
        results["train_seconds_this_run"] = round(lab.train_seconds, 1)
        # Whole-study cost, whichever run trained each job (a resumed run trains none).
        results["jobs"] = len(lab.trained_jobs())
        results["train_seconds_all_jobs"] = round(sum(i["seconds"]
                                                      for i in lab.trained_jobs()), 1)
        write_results(results, out)

    def chosen(pairs):
        return [p for p in pairs if only_pairs is None or f"{p[0]}->{p[1]}" in only_pairs]

    pairs = {"table2-photo": chosen(TABLE2_PAIRS[:2]), "table2-domains": chosen(TABLE2_PAIRS[2:])}
    for section in sections:
        log(f"== {section} ({time.time() - t0:.0f} s)")
        if section in pairs:
            for pair in pairs[section]:
                r = table2(lab, pair)
                results.setdefault("table2", []).append(r)
                figure3(r, out / f"fig3_{pair[0]}-{pair[1]}.png")
                write()
        elif section == "catastrophic":
            results["catastrophic"] = [catastrophic(lab, p) for p in chosen(TABLE2_PAIRS)]
            if chosen(TABLE2_PAIRS[:1]):
                results["figure4"] = figure4(lab, TABLE2_PAIRS[0], out / "fig4_forgetting.png")
        elif section == "adapter-size":
            results["adapter_size"] = adapter_size(lab)
        elif section == "table1":
            results["table1"] = [table1(lab, p) for p in chosen(TABLE1_PAIRS)]
        elif section == "lr-sweep":
            results["lr_sweep"] = lr_sweep(lab)
        elif section == "seeds":
            results["seeds"] = []
            for pair in chosen(TABLE2_PAIRS):
                results["seeds"].append(seeds(lab, pair, seed_count))
                write()
        write()
    if "table2" in results:  # keep the paper's pair order whatever the section order
        results["table2"].sort(key=lambda t: [f"{a}->{b}" for a, b in TABLE2_PAIRS]
                               .index(t["pair"]))
    write()
    log(f"done in {time.time() - t0:.0f} s (training {lab.train_seconds:.0f} s)")
    return results


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = Scale()
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--crop", type=int, default=d.crop)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--lr", type=float, default=d.lr,
                   help="learning rate of naive, selective and scratch training")
    p.add_argument("--adapter-lr", type=float, default=d.adapter_lr,
                   help="learning rate of the adapters (cawf, affine)")
    p.add_argument("--joint-lr", type=float, default=d.joint_lr,
                   help="learning rate of the joint reference model")
    p.add_argument("--test-images", type=int, default=d.test_images)
    p.add_argument("--only", default=",".join(SECTIONS),
                   help=f"comma-separated sections, in order, from {', '.join(SECTIONS)}")
    p.add_argument("--pairs", help="comma-separated pairs to run, e.g. astro->screen "
                   "(default: all)")
    p.add_argument("--seeds", type=int, default=SEEDS,
                   help="runs per Table 2 pair in the seeds section, seed 0 included")
    p.add_argument("--work", type=Path, default=REPO_ROOT / "runs" / "experiments")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "results")
    p.add_argument("--device", default="auto")
    p.add_argument("--rebaseline", action="store_true",
                   help="only measure the JPEG 2000 rows of the results in --out again, with "
                   "the current baseline settings, against their stored reference curves "
                   "(trains nothing; seconds)")
    a = p.parse_args(argv)
    if a.rebaseline:
        try:
            rebaseline_results(a.out, a.work, pick_device(a.device))
        except NicodecError as e:
            raise SystemExit(f"error: {e}") from None
        return
    sections = [s.strip() for s in a.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    if a.seeds < 2:
        p.error("--seeds must be at least 2 (a spread needs two runs)")
    scale = Scale(a.steps, a.crop, a.batch, a.lr, a.adapter_lr, a.joint_lr, a.test_images)
    only_pairs = None if a.pairs is None else {x.strip() for x in a.pairs.split(",")}
    known = {f"{x}->{y}" for x, y in TABLE2_PAIRS}
    if only_pairs is not None and not only_pairs <= known:
        p.error(f"unknown pair(s): {', '.join(sorted(only_pairs - known))}")
    try:
        run(scale, a.work, a.out, pick_device(a.device), sections, only_pairs=only_pairs,
            seed_count=a.seeds)
    except NicodecError as e:  # e.g. no prepared data: one line, no traceback
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
