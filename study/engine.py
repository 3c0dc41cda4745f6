"""The study's engine: scales, jobs, the cached lab that trains and measures them."""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from nicodec import image, methods
from nicodec.adapt import adapted_codec, package_tensors, trainable
from nicodec.baselines import SETTINGS
from nicodec.codec import Codec
from nicodec.container import format_id
from nicodec.errors import NicodecError
from nicodec.data import CropSampler, MixedSampler, list_images, prepared_name, split_dir
from nicodec.evaluate import baseline_curve, codec_point
from nicodec.network import FactorizedPrior, count_parameters, widen
from nicodec.modelfile import TABLE_PREFIX, content_hash, content_id
from nicodec.registry import Registry
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


# The photo training set of nicodec 0.1, on which the published study was made (only the
# joint photo+astro reference trains on photos); ``make data`` has grown the set since.
PHOTO_TRAIN_V01 = Path(__file__).with_name("photo-train-0.1.json")


def training_files(domain: str, n: int | str) -> list[Path]:
    folder = split_dir(domain, "train")
    if domain == "photo":
        names = json.loads(PHOTO_TRAIN_V01.read_text())["train"]
        files = sorted(folder / prepared_name(rel) for rel in names)
        missing = [f.name for f in files if not f.exists()]
        if missing:
            raise NicodecError(f"{len(missing)} of the study's photo training images are not "
                               f"in {folder} (first: {missing[0]}): run 'make data'")
    else:
        files = list_images(folder)
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

    def __init__(self, scale: Scale, work: Path, device: str, log=print,
                 build=None, train_options: dict | None = None):
        """``build(method, base, k, channel_affine=False)`` makes a job's network to train
        (default :func:`nicodec.adapt.trainable`); ``train_options`` are extra
        :class:`~nicodec.train.TrainConfig` fields for every job. The probes use these
        hooks (their jobs live in their own ``work``)."""
        self.scale, self.work, self.device, self.log = scale, Path(work), device, log
        self.build = build or trainable
        self.train_options = train_options or {}
        self.reg = Registry()
        self.qualities = sorted(e.quality for e in self.reg.bases()
                                if e.domain == "photo" and e.generation == STUDY_GENERATION)
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
            return self.build("cawf", base, job.k, channel_affine=True).to(self.device)
        return self.build(job.method, base, job.k).to(self.device)

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

    def trained_jobs(self) -> list[dict]:
        """What training recorded for every job this lab has loaded."""
        return list(self._info.values())

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
                          log_every=max(1, self.scale.steps // 4), **self.train_options)
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

    def cached(self, key: str, fn) -> dict:
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
            return self.cached(key, lambda: _slim(codec_point(c, self.tests(domain), label,
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
        # The key names the baseline's settings: a cache from other settings (0.1 ran
        # without the colour transform) is never reused.
        setting = hashlib.sha256(SETTINGS["jpeg2000"].encode()).hexdigest()[:8]
        key = f"jpeg2000-{setting}_{domain}{self.scale.test_images}"
        return self.cached(key, lambda: _slim_curve(
            baseline_curve("jpeg2000", self.tests(domain), with_ms_ssim=False)))


def _slim(point: dict) -> dict:
    return {k: point[k] for k in ("setting", "bpp", "psnr")}


def _slim_curve(curve: dict) -> dict:
    return {"name": curve["name"], "points": [_slim(p) for p in curve["points"]]}
