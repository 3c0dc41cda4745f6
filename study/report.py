"""The study's report: findings, summary and the markdown tables."""

from __future__ import annotations

import json


from nicodec import metrics
from study.engine import CAWF_AFFINE, CAWF_FORMS
from study.sections import difference, suffix

def findings(results: dict) -> list[dict]:
    """The paper's qualitative claims, checked on our numbers (issue #4's targets)."""
    out = []
    for t in results.get("table2", []):
        src, tgt = t["pair"].split("->")
        row = {(r["method"], r["domain"]): r for r in t["rows"]}
        naive_src = row["naive", src]["vs_t1"]["bd_rate"]
        f = {"pair": t["pair"], "naive_source_change": naive_src,
             "naive_forgets": None if naive_src is None else naive_src >= 5}
        for m in CAWF_FORMS:
            key = m.replace("+", "_")  # cawf, cawf_affine
            src_change = row[m, src]["vs_t1"]["bd_rate"]
            gap = difference(row[m, tgt]["bd_rate"], row["naive", tgt]["bd_rate"])
            f |= {f"{key}_source_change": src_change,
                  f"{key}_keeps_source": src_change == 0.0,
                  f"target_gap_{key}_minus_naive": gap,
                  f"{key}_within_5_points": None if gap is None else gap <= 5}
        out.append(f)
    for c in results.get("catastrophic", []):
        loss = c["psnr_t1"] - (c["psnr_naive_decoder"] if c["psnr_naive_decoder"] is not None
                               else 0.0)
        f = next((f for f in out if f["pair"] == c["pair"]), None)
        if f is not None:
            f["old_bitstreams_lose_db"] = loss
            f["old_bitstreams_lose_5db"] = loss >= 5
    for sd in results.get("seeds", []):
        f = next((f for f in out if f["pair"] == sd["pair"]), None)
        if f is None:
            continue
        for m in CAWF_FORMS:
            x, key = suffix(m), m.replace("+", "_")
            n = sum(p[f"gap{x}"] is not None for p in sd["per_seed"])
            mean = sd[f"gap{x}_mean"]
            f |= {f"target_gap{x}_seeds": n, f"target_gap{x}_mean": mean,
                  f"target_gap{x}_sd": sd[f"gap{x}_sd"], f"target_gap{x}_se": sd[f"gap{x}_se"],
                  f"target_bd_psnr_gap{x}_mean": sd[f"bd_psnr_gap{x}_mean"],
                  f"{key}_within_5_points_on_mean": None if mean is None else mean <= 5}
    return out


def summary(results: dict) -> dict:
    return {
        "scale": results["scale"],
        "bd_method": metrics.BD_METHOD,
        "findings": findings(results),
        "table2": [{k: r[k] for k in ("pair", "method", "domain", "bd_rate", "bd_psnr")}
                   for t in results.get("table2", []) for r in t["rows"]],
        "catastrophic": [{k: c[k] for k in ("pair", "psnr_t1", "psnr_naive_decoder",
                                            "psnr_naive_synthesis")}
                         for c in results.get("catastrophic", [])],
        "adapter_size": [{"k": r["k"], "form": r["form"], "params_added": r["params_added"],
                          "target_bd_rate": r["target_bd_rate"],
                          "target_bd_psnr": r["target"]["bd_psnr"],
                          "source_bd_rate": r["source_bd_rate"]}
                         for r in results.get("adapter_size", {}).get("rows", [])],
        "table1": [{"pair": t["pair"], **r} for t in results.get("table1", [])
                   for r in t["rows"]],
        "lr_sweep": [{"pair": results["lr_sweep"]["pair"], **r}
                     for r in results.get("lr_sweep", {}).get("rows", [])],
        "seeds": [{"pair": sd["pair"], "seed": p["seed"],
                   **{f"{m.replace('+', '_')}_{k}": p[m][k] for m in ("naive", *CAWF_FORMS)
                      for k in ("bd_rate", "bd_psnr")},
                   **{f"gap{suffix(m)}": p[f"gap{suffix(m)}"] for m in CAWF_FORMS}}
                  for sd in results.get("seeds", []) for p in sd["per_seed"]],
    }


def _f(v, fmt="{:+.1f}") -> str:
    return "n/a" if v is None else fmt.format(v)


def _bd_cell(d: dict) -> str:
    """'BD-rate (BD-PSNR)' of a bd() result, n/a where undefined."""
    return f"{_f(d['bd_rate'])} ({_f(d['bd_psnr'], '{:+.2f}')})"


def _table(title: str | None, header: list[str], rows) -> list[str]:
    """A markdown table (under a ``###`` title, if any), followed by a blank line."""
    return (([f"### {title}", ""] if title else [])
            + ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""])


def _seed_gap(f: dict, x: str) -> str:
    """'mean ± se (n)' of a finding's seed gap, '-' without a seeds section."""
    if f"target_gap{x}_mean" not in f:
        return "-"
    return (f"{_f(f[f'target_gap{x}_mean'])} ± {_f(f[f'target_gap{x}_se'], '{:.1f}')} "
            f"({f[f'target_gap{x}_seeds']})")


def markdown(results: dict) -> str:
    """The tables of docs/experiments.md, generated from the results."""
    out = [f"Scale: {json.dumps(results['scale'])}; BD interpolation: {metrics.BD_METHOD}", ""]
    if results.get("table2"):
        out += _table("The paper's findings on our numbers (CAwF: the paper's adapter; "
                      "+affine: with the channel affine)",
                      ["pair", "naive: source change (BD-rate % vs t1)",
                       "CAwF / +affine: source change",
                       "target gap, CAwF - naive (points, vs joint)",
                       "same, mean ± se over seeds", "+affine - naive", "same, mean ± se",
                       "old bitstreams, naive decoder (dB lost)"],
                      [[f["pair"], _f(f["naive_source_change"]),
                        f"{_f(f['cawf_source_change'], '{:+.2f}')} / "
                        f"{_f(f['cawf_affine_source_change'], '{:+.2f}')}",
                        _f(f["target_gap_cawf_minus_naive"]), _seed_gap(f, ""),
                        _f(f["target_gap_cawf_affine_minus_naive"]),
                        _seed_gap(f, "_cawf_affine"),
                        _f(f.get("old_bitstreams_lose_db"), "{:.1f}")]
                       for f in findings(results)])
    if results.get("seeds"):
        out += _table("Target gap across seeds (BD-rate % on the target test set against the "
                      "joint codec; gap = adapter - naive, points)",
                      ["pair", "seed", "t2 naive", "t2 CAwF", "gap", "t2 CAwF+affine", "gap"],
                      [[sd["pair"], p["seed"], _bd_cell(p["naive"]), _bd_cell(p["cawf"]),
                        _f(p["gap"]), _bd_cell(p[CAWF_AFFINE]), _f(p["gap_cawf_affine"])]
                       for sd in results["seeds"] for p in sd["per_seed"]])
        out[-1:] = [""] + [f"- {sd['pair']}, {name}: gap {_f(sd[f'gap{x}_mean'])} ± "
                           f"{_f(sd[f'gap{x}_sd'], '{:.1f}')} points (mean ± sd over seeds; "
                           f"standard error of the mean {_f(sd[f'gap{x}_se'], '{:.1f}')}); "
                           f"in BD-PSNR {name} - naive "
                           f"{_f(sd[f'bd_psnr_gap{x}_mean'], '{:+.2f}')} ± "
                           f"{_f(sd[f'bd_psnr_gap{x}_se'], '{:.2f}')} dB (mean ± se); "
                           f"BD-PSNR sd naive {_f(sd['naive_bd_psnr_sd'], '{:.2f}')} dB, "
                           f"{name} {_f(sd[f'{m}_bd_psnr_sd'], '{:.2f}')} dB"
                           for sd in results["seeds"]
                           for m, name, x in (("cawf", "CAwF", ""),
                                              (CAWF_AFFINE, "CAwF+affine", "_cawf_affine"))]
        out += [""]
    if results.get("table1"):
        out += _table("Table 1: few target images (BD-rate % / BD-PSNR dB on the target test "
                      "set, against naive fine tuning on all target images)",
                      ["pair", "method", "N", "BD-rate %", "BD-PSNR dB"],
                      [[t["pair"], r["method"], r["n"] or "-", _f(r["bd_rate"]),
                        _f(r["bd_psnr"], "{:+.2f}")]
                       for t in results["table1"] for r in t["rows"]])
    if results.get("table2"):
        rows = []
        for t in results["table2"]:
            for domain in dict.fromkeys(r["domain"] for r in t["rows"]):
                rows.append([t["pair"], domain] + [_bd_cell(r) for r in t["rows"]
                                                   if r["domain"] == domain])
        out += _table("Table 2: forgetting (BD-rate % against the joint 80-filter codec; "
                      "BD-PSNR dB in brackets)",
                      ["pair", "domain", "t1", "t2 naive", "t2 CAwF", "t2 CAwF+affine",
                       "JPEG 2000"], rows)
        rows = []
        for t in results["table2"]:
            by = {(r["method"], r["domain"]): r for r in t["rows"]}
            for (method, domain), r in by.items():
                if method == "naive":
                    rows.append([t["pair"], domain, _bd_cell(r["vs_t1"])]
                                + [_bd_cell(by[m, domain]["vs_t1"]) for m in CAWF_FORMS])
        out[-1:] = ["", "Against t1 on the same domain (BD-rate %, BD-PSNR dB):", ""]
        out += _table(None, ["pair", "domain", "t2 naive", "t2 CAwF", "t2 CAwF+affine"], rows)
    if results.get("catastrophic"):
        out += _table("Catastrophic forgetting: source test set, t1 bitstreams "
                      "(mean PSNR dB over qualities)",
                      ["pair", "decoded by t1", "by the t2 naive decoder",
                       "t1 latents, t2 synthesis"],
                      [[c["pair"]] + [_f(c[k], "{:.2f}") for k in
                                      ("psnr_t1", "psnr_naive_decoder", "psnr_naive_synthesis")]
                       for c in results["catastrophic"]])
    if results.get("adapter_size"):
        a = results["adapter_size"]
        out += _table(f"Adapter size ({a['pair']}; against the base codec on the target test "
                      "set; source unchanged)",
                      ["form", "K", "parameters added", "target BD-rate %", "target BD-PSNR dB",
                       "share of K=16 gain", "source BD-rate %"],
                      [[r["form"], r["k"] or "-", f"{r['params_added']:,}",
                        _f(r["target_bd_rate"]), _f(r["target"]["bd_psnr"], "{:+.2f}"),
                        _f(r["fraction_of_k16_gain"], "{:.0%}"),
                        _f(r["source_bd_rate"], "{:+.2f}")] for r in a["rows"]])
        out[-1:] = ["", f"Smallest keeping 90% of the K=16 gain (by BD-PSNR): "
                    f"{a['smallest_keeping_90pct']}", ""]
    if results.get("lr_sweep"):
        w = results["lr_sweep"]
        out += _table(f"Learning rates ({w['pair']}, target test set, against the study's "
                      "joint model; * = the study's, best = the sweep's choice)",
                      ["method", "lr", "vs joint: BD-rate % (BD-PSNR dB)",
                       "vs t1: BD-rate % (BD-PSNR dB)", "joint on the source"],
                      [[r["method"], f"{r['lr']:g}" + (" *" if r["study"] else "")
                        + (" best" if r["best"] else "")] + (
                          [f"diverged (step {r['diverged_at_step']})"] * 2 + ["-"]
                          if "diverged_at_step" in r else
                          [_bd_cell(r["target_vs_joint"]), _bd_cell(r["target_vs_t1"]),
                           _bd_cell(r["source_vs_joint"]) if "source_vs_joint" in r else "-"])
                       for r in w["rows"]])
        out[-1:] = ["", "CAwF's learning rate on the other pairs (target test set, against t1):",
                    ""]
        out += _table(None, ["pair", "lr", "BD-rate % (BD-PSNR dB)"],
                      [[r["pair"], f"{r['lr']:g}" + (" *" if r["study"] else ""),
                        _bd_cell(r["target_vs_t1"])] for r in w["other_pairs"]])
    p = results["parameters"]
    rows = []
    for name, filters in (("base", 64), ("cawf", 80)):
        c, ref = p[name], p["paper"][name]
        rows.append(["CAwF" if name == "cawf" else "base", filters] + [
            f"{c[k]:,}" + ("" if c[k] == ref[k] else f" (paper {ref[k]:,})")
            for k in ("encoder", "entropy_model", "decoder", "total")])
    out += _table("Table 3: parameters (ours = paper)",
                  ["model", "filters", "encoder", "entropy model", "decoder", "total"], rows)
    out[-1:] = ["", f"The CAwF adapter file stores {p['cawf_adapter_stored']:,} custom "
                f"parameters ({p['cawf_affine_adapter_stored']:,} with the channel affine); "
                f"selective fine tuning tunes {p['selective_tuned']:,} "
                f"({p['selective_tuned'] / p['base']['total']:.1%} of the base).", ""]
    return "\n".join(out)

