"""The study's sections: the paper's Tables 1-3, forgetting, adapter size, learning rates, seeds."""

from __future__ import annotations


import numpy as np
import torch

from nicodec import container, metrics
from nicodec.adapt import trainable
from nicodec.codec import Codec
from nicodec.evaluate import compare
from nicodec.network import Adapter, FactorizedPrior, count_parameters, widen
from nicodec.train import TrainingDiverged
from study.engine import (CAWF_FORMS, Job, LR_GRID, LR_SWEEP_PAIR, Lab, SEEDS, SIZE_STUDY_KS,
    SIZE_STUDY_PAIR, TABLE1_SIZES, TABLE2_PAIRS)

def bd(ref: dict, test: dict) -> dict:
    """BD-rate (%) and BD-PSNR (dB) of ``test`` against ``ref``; None where undefined."""
    (row,) = compare([ref, test])
    return {"bd_rate": row["bd_rate"], "bd_psnr": row["bd_psnr"]}


def identical_curves(a: dict, b: dict) -> bool:
    return all(p["bpp"] == r["bpp"] and p["psnr"] == r["psnr"]
               for p, r in zip(a["points"], b["points"]))


# ---------------------------------------------------------------------- experiments
TABLE2_METHODS = ("t1", "naive", *CAWF_FORMS, "jpeg2000")


def table2(lab: Lab, pair: tuple[str, str]) -> dict:
    """Forgetting (paper Table 2): t1, t2 naive, t2 CAwF (the paper's, and with the channel
    affine) and JPEG 2000 on source and target, BD-rate against the jointly trained
    80-filter codec."""
    src, tgt = pair
    joint = Job("joint", *joint_init(pair))
    naive = Job("naive", src, (tgt,))
    adapters = {m: Job(m, src, (tgt,)) for m in CAWF_FORMS}
    rows, curves = [], {}
    for domain in (src, tgt):
        ref = lab.job_curve(joint, domain)
        t1 = lab.t1_curve(src, domain)
        c = {"joint": ref, "t1": t1, "naive": lab.job_curve(naive, domain)}
        for method, job in adapters.items():
            if domain == src:
                # CAwF codes the source domain with the base codec it was trained on top
                # of: measured again, uncached, once the adapter is trained.
                _check_base_unchanged(lab, job, src)
                c[method] = lab.fresh_curve(f"{method}_source", lambda q: lab.t1(src, q), src)
            else:
                c[method] = lab.job_curve(job, domain)
        c["jpeg2000"] = lab.jpeg2000(domain)
        curves[domain] = c
        for method in TABLE2_METHODS:
            row = {"pair": f"{src}->{tgt}", "method": method, "domain": domain,
                   **bd(ref, c[method])}
            if method in ("naive", *CAWF_FORMS):  # what the argument rests on: change from t1
                row["vs_t1"] = bd(t1, c[method])
            rows.append(row)
    return {"pair": f"{src}->{tgt}", "rows": rows, "curves": curves}


def joint_init(pair: tuple[str, str]) -> tuple[str, tuple[str, ...]]:
    """One joint model per set of two domains, started from the first pair's source."""
    domains = tuple(sorted(pair))
    first = next(p for p in TABLE2_PAIRS if tuple(sorted(p)) == domains)
    return first[0], domains


def _check_base_unchanged(lab: Lab, cawf: Job, src: str) -> None:
    """After CAwF training, the source's base codec still writes the same bytes."""
    for q in lab.qualities:
        base = lab.t1(src, q)
        name, rgb = lab.tests(src)[0]
        before = base.encode(rgb)
        lab.codec(cawf, q)  # trains the adapter if needed (asserts frozen base inside)
        if base.encode(rgb) != before:
            raise RuntimeError(f"{cawf.name}: base codec output changed")


def catastrophic(lab: Lab, pair: tuple[str, str]) -> dict:
    """t1 bitstreams of the source test set decoded by t1 and by the naive t2 decoder.

    ``psnr_naive_decoder``: the whole t2 decoder (its entropy tables and synthesis), as
    ``nicodec decode --force-model`` would run it. ``psnr_naive_synthesis``: the t1 latents
    decoded correctly, then t2's synthesis transform (what the paper's Figure 4 shows).
    """
    src, tgt = pair
    naive = Job("naive", src, (tgt,))
    per_q = []
    for q in lab.qualities:
        t1, t2 = lab.t1(src, q), lab.codec(naive, q)

        def measure(t1=t1, t2=t2):
            out = {"t1": [], "decoder": [], "synthesis": [], "undecodable": 0}
            for _, rgb in lab.tests(src):
                header, payload = container.parse(t1.encode(rgb))
                out["t1"].append(metrics.psnr(rgb, t1.decode(header, payload)))
                try:
                    out["decoder"].append(metrics.psnr(rgb, t2.decode(header, payload)))
                except Exception:  # garbage symbols may not even parse as a latent
                    out["undecodable"] += 1
                y = t1.latents(rgb)
                rec = synthesis(t2, t1, y, rgb.shape[0], rgb.shape[1])
                out["synthesis"].append(metrics.psnr(rgb, rec))
            return {"quality": q, "psnr_t1": float(np.mean(out["t1"])),
                    "psnr_naive_decoder": (float(np.mean(out["decoder"]))
                                           if out["decoder"] else None),
                    "undecodable": out["undecodable"],
                    "psnr_naive_synthesis": float(np.mean(out["synthesis"]))}
        key = f"catastrophic_{naive.name}_{lab.tag(naive)}-q{q}_{src}{lab.scale.test_images}"
        per_q.append(lab.cached(key, measure))
    mean = {k: _mean_or_none([r[k] for r in per_q])
            for k in ("psnr_t1", "psnr_naive_decoder", "psnr_naive_synthesis")}
    return {"pair": f"{src}->{tgt}", **mean, "per_quality": per_q}


def _mean_or_none(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


@torch.no_grad()
def synthesis(t2: Codec, t1: Codec, q: np.ndarray, height: int, width: int) -> np.ndarray:
    from nicodec.codec import tensor_to_pixels

    y_hat = torch.from_numpy(q).to(t2.device)[None].float() + t1.median
    return tensor_to_pixels(t2.net.synthesis(y_hat), height, width)


def adapter_size(lab: Lab) -> dict:
    """Target gain against adapter size: CAwF with K custom filters, and the affine form."""
    src, tgt = SIZE_STUDY_PAIR
    t1_tgt, t1_src = lab.t1_curve(src, tgt), lab.t1_curve(src, src)
    jobs = [Job("cawf", src, (tgt,), k=k) for k in SIZE_STUDY_KS] + [
        Job("affine", src, (tgt,))]
    rows = []
    for job in jobs:
        _check_base_unchanged(lab, job, src)  # trains the job's four qualities
        curve = lab.job_curve(job, tgt)
        added = lab.info(job, lab.qualities[0])["trainable_parameters"]
        rows.append({"k": job.k if job.method == "cawf" else 0, "form": job.method,
                     "params_added": added, "target": bd(t1_tgt, curve),
                     "target_bd_rate": bd(t1_tgt, curve)["bd_rate"], "curve": curve})
    # The source test set coded again, uncached, by the base codec that every adapter above
    # was trained on top of: the same curve as before any adaptation means 0.00 %.
    src_after = lab.fresh_curve("t1_after", lambda q: lab.t1(src, q), src)
    for r in rows:
        r["source_bd_rate"] = bd(t1_src, src_after)["bd_rate"]
        r["source_identical"] = identical_curves(t1_src, src_after)
    full = next(r for r in rows if r["form"] == "cawf" and r["k"] == 16)
    for r in rows:
        gain, ref = r["target"]["bd_psnr"], full["target"]["bd_psnr"]
        r["fraction_of_k16_gain"] = gain / ref if gain is not None and ref else None
    keeping = [r for r in rows if (r["fraction_of_k16_gain"] or 0) >= 0.9]
    smallest = min(keeping, key=lambda r: r["params_added"]) if keeping else None
    return {"pair": f"{src}->{tgt}", "rows": rows,
            "smallest_keeping_90pct": (None if smallest is None else
                                       {"form": smallest["form"], "k": smallest["k"],
                                        "params_added": smallest["params_added"]})}


def table1(lab: Lab, pair: tuple[str, str]) -> dict:
    """Few target images (paper Table 1): BD-rate on the target test set against the model
    fine-tuned on all target training images."""
    src, tgt = pair
    ref = lab.job_curve(Job("naive", src, (tgt,)), tgt)
    rows = [{"method": "source", "n": 0, **bd(ref, lab.t1_curve(src, tgt))},
            {"method": "jpeg2000", "n": 0, **bd(ref, lab.jpeg2000(tgt))}]
    curves = {}
    for n in TABLE1_SIZES:
        for method in ("scratch", "naive", "selective"):
            job = Job(method, src, (tgt,), n=n)
            curves[job.name] = lab.job_curve(job, tgt)
            rows.append({"method": method, "n": n, **bd(ref, curves[job.name])})
    return {"pair": f"{src}->{tgt}", "reference": ref["name"], "rows": rows,
            "curves": curves}


def seeds(lab: Lab, pair: tuple[str, str], count: int = SEEDS) -> dict:
    """How much of the target gap between CAwF (both forms) and naive fine tuning is chance:
    all trained again with other seeds (initialisation of new parameters, crop order),
    BD-rate on the target test set against the same joint reference. Seeds 0 .. count-1;
    seed 0 is the study's own run."""
    src, tgt = pair
    ref = lab.job_curve(Job("joint", *joint_init(pair)), tgt)
    per_seed = []
    for seed in range(count):
        r = {m: bd(ref, lab.job_curve(Job(m, src, (tgt,), seed=seed), tgt))
             for m in ("naive", *CAWF_FORMS)}
        gaps = {f"gap{suffix(m)}": difference(r[m]["bd_rate"], r["naive"]["bd_rate"])
                for m in CAWF_FORMS}
        per_seed.append({"seed": seed, **r, **gaps})
    out = {"pair": f"{src}->{tgt}", "per_seed": per_seed}
    for m in CAWF_FORMS:
        gaps = [p[f"gap{suffix(m)}"] for p in per_seed]
        psnr_gaps = [difference(p[m]["bd_psnr"], p["naive"]["bd_psnr"]) for p in per_seed]
        out |= {f"gap{suffix(m)}_mean": _mean_or_none(gaps),
                f"gap{suffix(m)}_sd": _sd_or_none(gaps),
                f"gap{suffix(m)}_se": _se_or_none(gaps),
                # the same comparison in dB at equal rate, which small PSNR steps do not
                # inflate
                f"bd_psnr_gap{suffix(m)}_mean": _mean_or_none(psnr_gaps),
                f"bd_psnr_gap{suffix(m)}_se": _se_or_none(psnr_gaps)}
    return out | {f"{m}_bd_psnr_sd": _sd_or_none([p[m]["bd_psnr"] for p in per_seed])
                  for m in ("naive", *CAWF_FORMS)}


def suffix(method: str) -> str:
    """Key suffix of a CAwF form's numbers: "" for the paper's CAwF, "_cawf_affine" else."""
    return "" if method == "cawf" else "_" + method.replace("+", "_")


def difference(a, b):
    return None if a is None or b is None else a - b


def _se_or_none(values):
    """Standard error of the mean of the values that exist (None below two)."""
    values = [v for v in values if v is not None]
    return None if len(values) < 2 else _sd_or_none(values) / np.sqrt(len(values))


def _sd_or_none(values):
    """Sample standard deviation of the values that exist (None below two)."""
    values = [v for v in values if v is not None]
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def lr_sweep(lab: Lab, pair: tuple[str, str] = LR_SWEEP_PAIR) -> dict:
    """How each learning rate of :data:`LR_GRID` serves naive, CAwF and joint training on
    one pair, at the study's scale: BD-rate / BD-PSNR on the target test set against the
    study's joint reference and against t1 (joint: on both test sets). This is where
    ``Scale.lr``, ``Scale.adapter_lr`` and ``Scale.joint_lr`` come from."""
    src, tgt = pair
    joint = joint_init(pair)
    study_joint = Job("joint", *joint)
    refs = {d: lab.job_curve(study_joint, d) for d in (src, tgt)}
    t1 = lab.t1_curve(src, tgt)
    rows = []
    for method in ("naive", "cawf", "joint"):
        for lr in LR_GRID:
            job = (Job("joint", *joint, lr=lr) if method == "joint"
                   else Job(method, src, (tgt,), lr=lr))
            row = {"method": method, "lr": lr, "study": lr == lab.scale.lr_for(method)}
            try:
                curve = lab.job_curve(job, tgt)
            except TrainingDiverged as e:
                rows.append({**row, "diverged_at_step": e.step})
                continue
            row |= {"target_vs_joint": bd(refs[tgt], curve), "target_vs_t1": bd(t1, curve)}
            if method == "joint":
                row["source_vs_joint"] = bd(refs[src], lab.job_curve(job, src))
            rows.append(row)
    for method in ("naive", "cawf", "joint"):
        mine = [r for r in rows if r["method"] == method]
        best = max(mine, key=_sweep_score)
        for r in mine:
            r["best"] = r is best
    # Chosen on this pair's test set (there is no separate validation split), so the other
    # pairs are the out-of-sample check: CAwF at the full codecs' lr and at its own.
    others = []
    for p in TABLE2_PAIRS:
        if p == pair:
            continue
        t1_p = lab.t1_curve(p[0], p[1])
        for lr in sorted({lab.scale.lr, lab.scale.adapter_lr}):
            curve = lab.job_curve(Job("cawf", p[0], (p[1],), lr=lr), p[1])
            others.append({"pair": f"{p[0]}->{p[1]}", "method": "cawf", "lr": lr,
                           "study": lr == lab.scale.adapter_lr, "target_vs_t1": bd(t1_p, curve)})
    return {"pair": f"{src}->{tgt}", "grid": list(LR_GRID), "rows": rows,
            "other_pairs": others}


def _sweep_score(row: dict) -> float:
    """What a learning rate is chosen by: BD-PSNR on what the model is for, the target test
    set (joint: the mean over the source and target test sets)."""
    if "diverged_at_step" in row:
        return -np.inf
    scores = [row["target_vs_joint"]["bd_psnr"]] + (
        [row["source_vs_joint"]["bd_psnr"]] if "source_vs_joint" in row else [])
    return -np.inf if None in scores else float(np.mean(scores))


def parameters() -> dict:
    """Table 3: parameter counts (no training needed). The CAwF codec in use has the shape of
    a plain 80-filter codec (:func:`~nicodec.network.widen`), which gives its breakdown."""
    base = FactorizedPrior()
    wide = widen(base, 16)

    def parts(net: FactorizedPrior) -> dict:
        return {"encoder": count_parameters(net.g_a),
                "entropy_model": count_parameters(net.entropy_bottleneck),
                "decoder": count_parameters(net.g_s), "total": count_parameters(net)}

    selective = trainable("selective", base, 0)
    return {"base": parts(base), "cawf": parts(wide),
            "cawf_adapter_stored": count_parameters(Adapter(base, 16)),
            "cawf_affine_adapter_stored": count_parameters(Adapter(base, 16,
                                                                   channel_affine=True)),
            "selective_tuned": sum(p.numel() for p in selective.parameters()
                                   if p.requires_grad),
            "paper": {"base": {"encoder": 324736, "entropy_model": 6208, "decoder": 324675,
                               "total": 655619},
                      "cawf": {"encoder": 505760, "entropy_model": 7760, "decoder": 505683,
                               "total": 1019203}}}


# ---------------------------------------------------------------------- figures
