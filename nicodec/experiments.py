"""``make experiments``: the paper's tables and figures, rerun at our scale.

Every trained network is a *job* (method, starting model, training images, steps), saved in
``runs/experiments/jobs/`` when done; every measurement is cached in
``runs/experiments/eval/``. A rerun skips whatever is already there, so the whole run is
resumable, and a larger ``--steps`` or ``--crop`` starts new jobs (they are part of the
job's name). Results go to ``docs/results/experiments.json``, ``summary.json``, the
markdown tables ``experiments_tables.md`` and the figures ``fig3_*.png``, ``fig4_*.png``.

Models (paper section 4, in our words):

* ``t1`` of a domain: ``photo`` is the shipped base codec; ``astro`` and ``screen`` are the
  photo codec naively fine-tuned on all of that domain's training images (at our scale a
  model trained from scratch on them would be far worse than this).
* ``naive`` / ``selective`` / ``scratch``: full new codecs (see :mod:`nicodec.adapt`).
* ``cawf`` (K custom filters, the paper's adapter), ``cawf+affine`` (the same plus a
  per-channel scale and bias after every widened convolution: ``nicodec adapt
  --channel-affine``) and ``affine`` (a lighter adapter: per-channel scale and bias after
  every convolution plus its own entropy model, everything of the base frozen): the base
  stays frozen, so the source domain is coded by the unchanged base codec.
* ``joint``: the Table 2 reference, an 80-filter codec trained on both domains, started from
  :func:`nicodec.network.widen` of the source's t1 codec.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from nicodec import container, image, methods, metrics, package
from nicodec.adapt import adapted_codec, package_tensors, trainable
from nicodec.codec import Codec
from nicodec.container import format_id
from nicodec.data import CropSampler, MixedSampler, REPO_ROOT, list_images, split_dir
from nicodec.errors import NicodecError
from nicodec.evaluate import baseline_curve, codec_point, compare
from nicodec.network import Adapter, FactorizedPrior, count_parameters, widen
from nicodec.modelfile import TABLE_PREFIX, content_hash, content_id
from nicodec.registry import Registry, generation_of, pick_device
from nicodec.train import TrainConfig, TrainingDiverged, train

TABLE1_PAIRS = (("photo", "astro"), ("photo", "screen"))
TABLE1_SIZES = (10, 25, 50)
TABLE2_PAIRS = (("photo", "astro"), ("photo", "screen"), ("astro", "screen"),
                ("screen", "astro"))
SIZE_STUDY_PAIR = ("photo", "astro")
SIZE_STUDY_KS = (2, 4, 8, 16)
ALL = "all"  # every training image of a domain
CAWF_AFFINE = "cawf+affine"
CAWF_FORMS = ("cawf", CAWF_AFFINE)  # adapters stored as CAwF adapter files
ADAPTER_METHODS = (*CAWF_FORMS, "affine")
LR_SWEEP_PAIR = ("astro", "screen")
LR_GRID = (1e-4, 3e-4, 1e-3, 3e-3)
SEEDS = 7  # runs of each Table 2 naive and CAwF job in the seeds section, seed 0 included


@dataclass(frozen=True)
class Scale:
    """How much training each job gets (the paper: ~hundreds of thousands of steps)."""

    steps: int = 400
    crop: int = 64
    batch: int = 8
    lr: float = 3e-4  # full codecs fine-tuned on one domain (naive, selective, scratch, t1)
    adapter_lr: float = 1e-3  # adapters (cawf, affine): new parameters, base frozen
    joint_lr: float = 1e-4  # the joint reference, which must keep the source as well
    test_images: int = 15

    def lr_for(self, method: str) -> float:
        """The learning rate of ``method`` (each chosen by the lr-sweep section)."""
        if method in ADAPTER_METHODS:
            return self.adapter_lr
        return self.joint_lr if method == "joint" else self.lr

    def tag_for(self, lr: float) -> str:
        return f"s{self.steps}c{self.crop}b{self.batch}lr{lr:g}"

    @property
    def tag(self) -> str:
        return self.tag_for(self.lr)


@dataclass(frozen=True)
class Job:
    """One trained network per quality.

    method: naive | selective | scratch | cawf | cawf+affine | affine | joint;  init: the
    domain whose t1 codec it starts from;  data: the domains it trains on;  n: number of
    training images (ALL or an int, the first n of a fixed shuffle: 10 of 25 of 50);
    lr: None for the scale's learning rate of the method (:meth:`Scale.lr_for`);  seed: 0
    for the study's runs, others to repeat a job with another initialisation and crop order.
    """

    method: str
    init: str
    data: tuple[str, ...]
    n: int | str = ALL
    k: int = 16
    lr: float | None = None
    seed: int = 0

    @property
    def name(self) -> str:
        extra = f"_k{self.k}" if self.method in CAWF_FORMS else ""
        seed = f"_seed{self.seed}" if self.seed else ""
        return f"{self.method}{extra}_{self.init}_{'+'.join(self.data)}_n{self.n}{seed}"

    def seed_for(self, quality: int) -> int:
        """Random seed of one quality's training (seed 0: the quality itself)."""
        return quality + 1000 * self.seed


def t1_job(domain: str) -> Job | None:
    """The job that makes a domain's t1 codec (None for photo: the shipped base)."""
    return None if domain == "photo" else Job("naive", "photo", (domain,))


def training_files(domain: str, n: int | str) -> list[Path]:
    files = list_images(split_dir(domain, "train"))
    if n == ALL:
        return files
    order = np.random.default_rng(0).permutation(len(files))
    return [files[i] for i in sorted(order[:n])]


def test_images(domain: str, count: int) -> list[tuple[str, np.ndarray]]:
    files = list_images(split_dir(domain, "test"))[:count]
    return [(f.name, image.load(f).rgb) for f in files]


@methods.register
class AffineAdapter(methods.Method):
    """The study's light adapter (not offered by ``adapt``): the selective network with only
    the per-channel scales and biases and the entropy model trainable."""

    name = "affine"
    user_facing = False

    def build(self, base, k: int = 0, **_):
        net = methods.get("selective").build(base)
        for name, p in net.named_parameters():
            p.requires_grad_(name.startswith(("a_affine", "s_affine", "entropy_bottleneck")))
        return net


# The study's committed results were made on the 0.1 models; it stays on them (rerunning it
# on a newer generation is a new study).
STUDY_GENERATION = 1


class Lab:
    """Trains (or loads) jobs and measures codecs, caching both under ``work``."""

    def __init__(self, scale: Scale, work: Path, device: str, log=print):
        self.scale, self.work, self.device, self.log = scale, Path(work), device, log
        self.reg = Registry()
        self.qualities = sorted(e["quality"] for e in self.reg.bases()
                                if e.get("domain", "photo") == "photo" and
                                generation_of(e) == STUDY_GENERATION)
        self._codecs: dict = {}
        self._info: dict = {}
        self._tests: dict = {}  # domain -> test images
        self._train_pixels: dict = {}  # (domain, n) -> training images
        self.train_seconds = 0.0
        (self.work / "jobs").mkdir(parents=True, exist_ok=True)
        (self.work / "eval").mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ models
    def t1(self, domain: str, quality: int) -> Codec:
        job = t1_job(domain)
        if job is None:
            return self.reg.codec(quality=quality, device=self.device,
                                  generation=STUDY_GENERATION)
        return self.codec(job, quality)

    def t1_network(self, domain: str, quality: int) -> nn.Module:
        """The t=1 codec of ``domain`` as a trainable network."""
        job = t1_job(domain)
        if job is None:
            entry = self.reg.find_base(quality=quality, generation=STUDY_GENERATION)
            return self.reg.base_network(entry, self.device)
        return self.codec(job, quality).net

    def _build(self, job: Job, quality: int) -> nn.Module:
        """The untrained network of ``job`` (from its t1 codec), on the device."""
        if job.method == "scratch":
            torch.manual_seed(job.seed_for(quality))
            return FactorizedPrior().to(self.device)
        base = self.t1_network(job.init, quality)
        if job.method == "joint":
            return widen(copy.deepcopy(base).cpu(), job.k).to(self.device)
        if job.method == "affine":
            return methods.get("affine").build(base).to(self.device)
        torch.manual_seed(job.seed_for(quality))
        if job.method == CAWF_AFFINE:
            return trainable("cawf", base, job.k, channel_affine=True).to(self.device)
        return trainable(job.method, base, job.k).to(self.device)

    def lr(self, job: Job) -> float:
        return self.scale.lr_for(job.method) if job.lr is None else job.lr

    def tag(self, job: Job) -> str:
        """Scale and learning rate: with the job's name, what its files are called."""
        return self.scale.tag_for(self.lr(job))

    def _path(self, job: Job, quality: int) -> Path:
        return self.work / "jobs" / f"{job.name}_{self.tag(job)}-q{quality}.safetensors"

    def codec(self, job: Job, quality: int) -> Codec:
        key = (job, quality)
        if key in self._codecs:
            return self._codecs[key]
        path = self._path(job, quality)
        sidecar = path.with_suffix(".json")
        info = json.loads(sidecar.read_text()) if sidecar.exists() else {}
        if "diverged_at_step" in info:  # known from an earlier run: do not train it again
            raise TrainingDiverged(info["diverged_at_step"], self.lr(job))
        net = self._build(job, quality)
        stored = "cawf" if job.method in CAWF_FORMS else "full"
        if path.exists():
            tensors = load_file(str(path))
            weights = {k: v for k, v in tensors.items()
                       if not k.startswith(TABLE_PREFIX)}
            (net.adapter if stored == "cawf" else net).load_state_dict(weights, strict=False)
        else:
            info = self._train(job, quality, net, path)
            tensors = load_file(str(path))
        base_id = (self.t1(job.init, quality).base_id if stored == "cawf"
                   else content_id(tensors))
        net.to(self.device)
        codec = adapted_codec(net, "cawf" if stored == "cawf" else "naive", tensors,
                              format_id(base_id), quality, info["lambda"], job.name,
                              self.device)
        self._codecs[key], self._info[key] = codec, info
        return codec

    def info(self, job: Job, quality: int) -> dict:
        """What training recorded for a job (steps, images, parameters, seconds, loss)."""
        self.codec(job, quality)
        return self._info[(job, quality)]

    def _train(self, job: Job, quality: int, net: nn.Module, path: Path) -> dict:
        lam = self.reg.lambda_for(quality)
        files = {d: training_files(d, job.n) for d in job.data}
        samplers = [CropSampler(self._pixels(d, job.n), crop=self.scale.crop,
                                 seed=job.seed_for(quality))
                    for d in job.data]
        sampler = samplers[0] if len(samplers) == 1 else MixedSampler(samplers)
        cfg = TrainConfig(lam=lam, steps=self.scale.steps, batch=self.scale.batch,
                          crop=self.scale.crop, lr=self.lr(job), seed=job.seed_for(quality),
                          log_every=max(1, self.scale.steps // 4))
        frozen = net.base if job.method in CAWF_FORMS else None
        before = content_hash(frozen.state_dict()) if frozen is not None else None
        t0 = time.time()
        try:
            stats = train(net, sampler, cfg, device=self.device, console_log=False)
        except TrainingDiverged as e:
            path.with_suffix(".json").write_text(json.dumps(
                {"job": job.name, "quality": quality, "lr": cfg.lr,
                 "diverged_at_step": e.step}, indent=1))
            self.log(f"  {job.name} q{quality} diverged at step {e.step} (lr {cfg.lr:g})")
            raise
        seconds = time.time() - t0
        if frozen is not None and content_hash(frozen.state_dict()) != before:
            raise RuntimeError(f"{job.name}: CAwF training changed the base parameters")
        self.train_seconds += seconds
        tensors = package_tensors(net, "cawf" if job.method in CAWF_FORMS else "naive")
        trainable_params = sum(p.numel() for p in net.parameters() if p.requires_grad)
        info = {"job": job.name, "quality": quality, "lambda": lam, "steps": cfg.steps,
                "crop": cfg.crop, "batch": cfg.batch, "lr": cfg.lr,
                "train_images": {d: len(f) for d, f in files.items()},
                "trainable_parameters": trainable_params,
                "parameters": count_parameters(net), "seconds": round(seconds, 1),
                "device": self.device, **stats}
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, str(tmp))
        path.with_suffix(".json").write_text(json.dumps(info, indent=1))
        tmp.replace(path)
        self.log(f"  trained {job.name} q{quality}: {seconds:.0f} s, loss {stats['loss']:.3f}, "
                 f"bpp {stats['bpp']:.3f}, PSNR {stats['psnr']:.2f} dB")
        return info

    def _pixels(self, domain: str, n: int | str) -> list[np.ndarray]:
        """Training images in memory, loaded once per run (screen has ~500)."""
        if (domain, n) not in self._train_pixels:
            self._train_pixels[domain, n] = CropSampler.from_files(
                training_files(domain, n)).images
        return self._train_pixels[domain, n]

    # ------------------------------------------------------------------ measuring
    def tests(self, domain: str) -> list[tuple[str, np.ndarray]]:
        if domain not in self._tests:
            self._tests[domain] = test_images(domain, self.scale.test_images)
        return self._tests[domain]

    def _cached(self, key: str, fn) -> dict:
        path = self.work / "eval" / f"{key}.json"
        if path.exists():
            return json.loads(path.read_text())
        value = fn()
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(value))
        tmp.replace(path)
        return value

    def curve(self, label: str, codec_of, domain: str, tag: str | None = None) -> dict:
        """RD curve over the four qualities: {"name", "points": [{bpp, psnr}, ...]}."""
        def measure(q):
            c = codec_of(q)
            key = f"{label}_{tag or self.scale.tag}-q{q}_{domain}{self.scale.test_images}"
            return self._cached(key, lambda: _slim(codec_point(c, self.tests(domain), label,
                                                               with_ms_ssim=False)))
        return {"name": label, "points": [measure(q) for q in self.qualities]}

    def fresh_curve(self, label: str, codec_of, domain: str) -> dict:
        """Like :meth:`curve`, measured now and never cached."""
        return {"name": label, "points": [
            _slim(codec_point(codec_of(q), self.tests(domain), label, with_ms_ssim=False))
            for q in self.qualities]}

    def job_curve(self, job: Job, domain: str) -> dict:
        return self.curve(job.name, lambda q: self.codec(job, q), domain, self.tag(job))

    def t1_curve(self, domain: str, on: str) -> dict:
        job = t1_job(domain)
        if job is None:
            return self.curve("t1_photo", lambda q: self.t1("photo", q), on)
        return self.job_curve(job, on)

    def jpeg2000(self, domain: str) -> dict:
        key = f"jpeg2000_{domain}{self.scale.test_images}"
        return self._cached(key, lambda: _slim_curve(
            baseline_curve("jpeg2000", self.tests(domain), with_ms_ssim=False)))


def _slim(point: dict) -> dict:
    return {k: point[k] for k in ("setting", "bpp", "psnr")}


def _slim_curve(curve: dict) -> dict:
    return {"name": curve["name"], "points": [_slim(p) for p in curve["points"]]}


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
    joint = Job("joint", *_joint_init(pair))
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


def _joint_init(pair: tuple[str, str]) -> tuple[str, tuple[str, ...]]:
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
                rec = _synthesis(t2, t1, y, rgb.shape[0], rgb.shape[1])
                out["synthesis"].append(metrics.psnr(rgb, rec))
            return {"quality": q, "psnr_t1": float(np.mean(out["t1"])),
                    "psnr_naive_decoder": (float(np.mean(out["decoder"]))
                                           if out["decoder"] else None),
                    "undecodable": out["undecodable"],
                    "psnr_naive_synthesis": float(np.mean(out["synthesis"]))}
        key = f"catastrophic_{naive.name}_{lab.tag(naive)}-q{q}_{src}{lab.scale.test_images}"
        per_q.append(lab._cached(key, measure))
    mean = {k: _mean_or_none([r[k] for r in per_q])
            for k in ("psnr_t1", "psnr_naive_decoder", "psnr_naive_synthesis")}
    return {"pair": f"{src}->{tgt}", **mean, "per_quality": per_q}


def _mean_or_none(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


@torch.no_grad()
def _synthesis(t2: Codec, t1: Codec, q: np.ndarray, height: int, width: int) -> np.ndarray:
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
    ref = lab.job_curve(Job("joint", *_joint_init(pair)), tgt)
    per_seed = []
    for seed in range(count):
        r = {m: bd(ref, lab.job_curve(Job(m, src, (tgt,), seed=seed), tgt))
             for m in ("naive", *CAWF_FORMS)}
        gaps = {f"gap{_suffix(m)}": _difference(r[m]["bd_rate"], r["naive"]["bd_rate"])
                for m in CAWF_FORMS}
        per_seed.append({"seed": seed, **r, **gaps})
    out = {"pair": f"{src}->{tgt}", "per_seed": per_seed}
    for m in CAWF_FORMS:
        gaps = [p[f"gap{_suffix(m)}"] for p in per_seed]
        psnr_gaps = [_difference(p[m]["bd_psnr"], p["naive"]["bd_psnr"]) for p in per_seed]
        out |= {f"gap{_suffix(m)}_mean": _mean_or_none(gaps),
                f"gap{_suffix(m)}_sd": _sd_or_none(gaps),
                f"gap{_suffix(m)}_se": _se_or_none(gaps),
                # the same comparison in dB at equal rate, which small PSNR steps do not
                # inflate
                f"bd_psnr_gap{_suffix(m)}_mean": _mean_or_none(psnr_gaps),
                f"bd_psnr_gap{_suffix(m)}_se": _se_or_none(psnr_gaps)}
    return out | {f"{m}_bd_psnr_sd": _sd_or_none([p[m]["bd_psnr"] for p in per_seed])
                  for m in ("naive", *CAWF_FORMS)}


def _suffix(method: str) -> str:
    """Key suffix of a CAwF form's numbers: "" for the paper's CAwF, "_cawf_affine" else."""
    return "" if method == "cawf" else "_" + method.replace("+", "_")


def _difference(a, b):
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
    joint_init = _joint_init(pair)
    study_joint = Job("joint", *joint_init)
    refs = {d: lab.job_curve(study_joint, d) for d in (src, tgt)}
    t1 = lab.t1_curve(src, tgt)
    rows = []
    for method in ("naive", "cawf", "joint"):
        for lr in LR_GRID:
            job = (Job("joint", *joint_init, lr=lr) if method == "joint"
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
def figure3(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    domains = list(result["curves"])
    fig, axes = plt.subplots(1, len(domains), figsize=(11, 4.2), dpi=100)
    styles = {"t1": "o-", "naive": "s-", "cawf": "^-", CAWF_AFFINE: "v-", "joint": "d:",
              "jpeg2000": "x--"}
    for ax, domain in zip(axes, domains):
        for method, curve in result["curves"][domain].items():
            pts = sorted(curve["points"], key=lambda p: p["bpp"])
            ax.plot([p["bpp"] for p in pts], [p["psnr"] for p in pts], styles[method],
                    label=method, ms=4)
        role = "source" if domain == domains[0] else "target"
        ax.set_title(f"{result['pair']}: {role} ({domain})")
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel("RGB PSNR (dB)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def figure4(lab: Lab, pair: tuple[str, str], path: Path, size: int = 192) -> dict:
    """Original, t1, t2 naive decoding the t1 bitstream, t2 naive, CAwF (on a source image),
    with |error| x 4 images below; at the second-lowest quality (q2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    src, tgt = pair
    quality = lab.qualities[min(1, len(lab.qualities) - 1)]
    name, rgb = lab.tests(src)[0]
    size = min(size, *rgb.shape[:2])
    h, w = rgb.shape[:2]
    y0, x0 = (h - size) // 2, (w - size) // 2
    crop = np.ascontiguousarray(rgb[y0:y0 + size, x0:x0 + size])
    t1, t2 = lab.t1(src, quality), lab.codec(Job("naive", src, (tgt,)), quality)
    blob = t1.encode(crop)
    header, payload = container.parse(blob)
    panels = {"original": crop, "t1": t1.decode(header, payload),
              "t2 naive, t1 bits": _synthesis(t2, t1, t1.latents(crop), size, size),
              "t2 naive": t2.decode(*container.parse(t2.encode(crop))),
              "CAwF (base path)": t1.decode(*container.parse(t1.encode(crop)))}
    fig, axes = plt.subplots(2, len(panels), figsize=(2.3 * len(panels), 4.8), dpi=100)
    psnrs = {}
    for i, (title, img) in enumerate(panels.items()):
        psnrs[title] = None if title == "original" else metrics.psnr(crop, img)
        axes[0, i].imshow(img)
        axes[0, i].set_title(title if psnrs[title] is None else
                             f"{title}\n{psnrs[title]:.1f} dB", fontsize=8)
        err = np.clip(np.abs(img.astype(int) - crop.astype(int)) * 4, 0, 255).astype(np.uint8)
        axes[1, i].imshow(err)
        for ax in axes[:, i]:
            ax.axis("off")
    fig.suptitle(f"{src}->{tgt}, q{quality}, {name} (bottom: |error| x 4)", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    return {"image": name, "quality": quality, "psnr": psnrs}


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    tmp = path.with_name(path.name + ".part.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


# ---------------------------------------------------------------------- report
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
            gap = _difference(row[m, tgt]["bd_rate"], row["naive", tgt]["bd_rate"])
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
            x, key = _suffix(m), m.replace("+", "_")
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
                   **{f"gap{_suffix(m)}": p[f"gap{_suffix(m)}"] for m in CAWF_FORMS}}
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


SECTIONS = ("table2-photo", "catastrophic", "adapter-size", "table2-domains", "table1",
            "lr-sweep", "seeds")


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
        results["jobs"] = len(lab._info)
        results["train_seconds_all_jobs"] = round(sum(i["seconds"]
                                                      for i in lab._info.values()), 1)
        for name, text in (("experiments.json", json.dumps(results, indent=1)),
                           ("summary.json", json.dumps(summary(results), indent=1)),
                           ("experiments_tables.md", markdown(results))):
            tmp = out / (name + ".tmp")
            tmp.write_text(text)
            tmp.replace(out / name)

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
    p = argparse.ArgumentParser(prog="python -m nicodec.experiments", description=__doc__,
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
    a = p.parse_args(argv)
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
