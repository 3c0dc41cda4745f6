"""``nicodec train``: a base model trained on a domain's training set, from scratch or warm
started, with a snapshot and a test-set point every ``ckpt_every`` steps, exported to the
registry at the end.

Long runs outlive a session. Each checkpoint writes, beside the Adam checkpoint in
``runs/``:

* ``<domain>-g<G>-q<Q>.safetensors``: a complete model file (weights and frozen tables,
  metadata ``step``) that ``--init`` resumes from at that step with a fresh optimizer;
* ``<domain>-g<G>-q<Q>.curve.jsonl``: one line per checkpoint, the test set's real bpp and
  PSNR (encode and decode through the codec) and the training loss at that step.

Under torchrun each rank trains on its shard of the images; rank 0 writes everything.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path


from nicodec import data, distributed, hyperprior, image, modelfile, registry
from nicodec.codec import Codec
from nicodec.container import NO_ADAPTER
from nicodec.errors import NicodecError
from nicodec.hyperprior import entropy_coder
from nicodec.network import FactorizedPrior, HyperPrior, JointCodec
from nicodec.train import TrainConfig, load_model_tensors, train


@dataclass
class BaseRun:
    domain: str
    quality: int
    steps: int
    generation: int = registry.CURRENT_GENERATION
    batch: int = 8
    crop: int = 128  # side of the square training crops, in pixels (a multiple of 16)
    lr: float = 1e-4
    lr_drop_at: float = 0.8
    init: Path | None = None
    runs: Path = Path("runs")
    ckpt_every: int = 2000
    curve_images: int | None = None  # test images per curve point (None: all)
    synthesis_only: bool = False  # tune only g_s on rounded latents (train.TrainConfig)
    distortion: str = "mse"  # or "psnr": the crops' geometric-mean MSE (train.TrainConfig)
    # the synthesis trains on rounded latents (straight-through), the rate on the noise proxy
    # (Minnen & Singh 2020; train.TrainConfig.round_for_synthesis)
    mixed_quantization: bool = False
    # train the transforms together with a mean-scale hyperprior (network.JointCodec): --init's
    # when its file has one (then always), else a new one
    hyperprior: bool = False

    @property
    def name(self) -> str:
        """The run's files in ``runs/``: a synthesis stage gets its own, so that it never
        resumes from the full training run of the same model."""
        stem = registry.base_file_stem(self.domain, self.quality, self.generation)
        return stem + "-synthesis" if self.synthesis_only else stem


def _init_weights(model: FactorizedPrior | JointCodec, path: Path, lam: float) -> int:
    """Load weights from a model file, a snapshot or an Adam checkpoint; returns the step
    a snapshot of this same ``lam`` was taken at (a resume), else 0 (a warm start). A
    :class:`JointCodec` takes a model file's transforms, and its hyperprior when the file
    has one (h_s from its fixed-point weights)."""
    tensors, meta = modelfile.load(path)
    prefix = "model." if any(k.startswith("model.") for k in tensors) else ""
    if isinstance(model, JointCodec) and not prefix:
        hyper = modelfile.hyper_tensors(tensors)
        if hyper:
            model.hyper = HyperPrior.from_tensors(hyper, m=model.latent_channels)
        model = model.codec
    tensors, _ = modelfile.split_tables(tensors)
    load_model_tensors(model, tensors, prefix=prefix)
    same_lambda = meta.get("lambda") is not None and float(meta["lambda"]) == lam
    return int(meta.get("step", 0)) if same_lambda else 0


def _leak_bits(ckpt: Path) -> int:
    """The hyperprior activation a joint run's checkpoint recorded (its config's ``extra``),
    so that a run resumed without ``--init`` keeps it; the default for a new run."""
    sidecar = ckpt.with_suffix(".json")
    if sidecar.exists():
        extra = json.loads(sidecar.read_text()).get("config", {}).get("extra", {})
        return int(extra.get("leak_bits", hyperprior.LEAK_BITS))
    return hyperprior.LEAK_BITS


def has_hyperprior(path: Path | None) -> bool:
    """Whether a model file (or training checkpoint) holds a hyperprior."""
    if path is None:
        return False
    return any(k.startswith((modelfile.HYPER_PREFIX, "model.hyper."))
               for k in modelfile.tensor_names(path))


def _history(run: BaseRun, steps: int, command: str) -> tuple[int, str]:
    """(steps, command) for the manifest. A run that starts from the very model file it
    exports to (a later stage of the same model, e.g. ``--synthesis-only``) adds to that
    file's entry: its steps to the earlier ones, its command after theirs with ``&&``."""
    stem = registry.base_file_stem(run.domain, run.quality, run.generation)
    out = registry.models_dir() / f"{stem}.safetensors"
    if run.init is None or not out.exists() or Path(run.init).resolve() != out.resolve():
        return steps, command
    earlier = next((m for m in registry.Manifest.read(out.parent).bases if m.file == out.name),
                   None)
    if earlier is None:
        return steps, command
    return earlier.steps + steps, f"{earlier.command} && {command}"


def snapshot_codec(model: FactorizedPrior, quality: int, lam: float) -> tuple[Codec, dict]:
    """A codec (and its model-file tensors) from a copy of a model in training."""
    frozen = copy.deepcopy(model).cpu().eval()
    tensors = registry.model_tensors(frozen)
    coder = entropy_coder(modelfile.split_tables(tensors)[1], modelfile.hyper_tensors(tensors))
    codec = Codec(net=frozen, coder=coder, base_id=modelfile.content_id(tensors),
                  adapter_id=NO_ADAPTER, quality=quality, lam=lam, device="cpu")
    return codec, tensors


def train_base(run: BaseRun, device: str = "cpu", command: str = "", log=print,
               progress: bool = True) -> dict:
    """Train (or resume) ``run`` and export it to the registry; returns the manifest entry."""
    from nicodec.evaluate import codec_point

    if run.synthesis_only and run.init is None:
        raise NicodecError("--synthesis-only tunes a trained model: give it --init")
    ckpt = run.runs / f"{run.name}.ckpt"
    out = registry.models_dir() / (registry.base_file_stem(run.domain, run.quality,
                                                           run.generation) + ".safetensors")
    registry.check_new_model(run.domain, run.quality, run.generation, same_model=ckpt.exists()
                             or (run.init is not None and Path(run.init).resolve() == out.resolve()))
    run.runs.mkdir(parents=True, exist_ok=True)
    device = distributed.init(device)
    lam = registry.Registry().lambda_for(run.quality)
    files = data.list_images(data.split_dir(run.domain, "train"))
    sampler = data.CropSampler.from_files(distributed.shard(files), crop=run.crop)
    if run.init is not None and any(k.startswith(modelfile.HYPER_PREFIX + "ctx.")
                                    for k in modelfile.tensor_names(run.init)):
        raise NicodecError(f"{run.init} codes with a context model, which nicodec train does "
                           "not train: start from the model whose hyperprior it refines "
                           "(nicodec models --all lists it as the same quality's generation "
                           "before)")
    joint = run.hyperprior or has_hyperprior(run.init) or (ckpt.exists() and has_hyperprior(ckpt))
    model = JointCodec(FactorizedPrior(), HyperPrior(leak_bits=_leak_bits(ckpt))) if joint \
        else FactorizedPrior()
    start = _init_weights(model, run.init, lam) if run.init else 0
    if run.synthesis_only:  # a new stage: its steps count from 0 whatever it starts from
        start = 0
    snapshot = run.runs / f"{run.name}.safetensors"
    curve = run.runs / f"{run.name}.curve.jsonl"
    tests = [(f.name, image.load(f).rgb)
             for f in data.list_images(data.split_dir(run.domain, "test"))][:run.curve_images]
    t0 = time.time()

    def on_checkpoint(m: FactorizedPrior, step: int, stats: dict) -> None:
        codec, tensors = snapshot_codec(m, run.quality, lam)
        modelfile.save(tensors, snapshot, {"step": str(step), "lambda": repr(lam)})
        point = codec_point(codec, tests, f"step {step}", with_ms_ssim=False)
        row = {"step": step, "bpp": point["bpp"], "psnr": point["psnr"],
               "train_loss": stats["loss"], "elapsed_s": round(time.time() - t0, 1)}
        with curve.open("a") as f:
            f.write(json.dumps(row) + "\n")
        log(f"step {step}: test {row['bpp']:.4f} bpp {row['psnr']:.2f} dB "
            f"(train loss {stats['loss']:.4f})")

    cfg = TrainConfig(lam=lam, steps=run.steps, batch=run.batch, crop=run.crop, lr=run.lr,
                      lr_drop_at=run.lr_drop_at, start=start, ckpt_every=run.ckpt_every,
                      log_every=min(50, run.ckpt_every),
                      label=f"{run.domain} q{run.quality}",
                      synthesis_only=run.synthesis_only, distortion=run.distortion,
                      round_for_synthesis=run.mixed_quantization,
                      extra={"leak_bits": model.hyper.leak_bits} if joint else {})
    if distributed.is_main():
        first = (json.loads(ckpt.with_suffix(".json").read_text())["step"] if ckpt.exists()
                 else start)  # train() resumes from the checkpoint
        what = (" with its hyperprior" if joint else "") + (
                ", only its synthesis on rounded latents," if run.synthesis_only else
                ", the synthesis on rounded latents," if run.mixed_quantization else "")
        log(f"training {run.name}{what} (lambda={lam}) on {len(files)} images in "
            f"{distributed.world_size()} process(es), steps {first}..{run.steps}, batch "
            f"{run.batch} of {run.crop}x{run.crop} per process, lr {run.lr:g}, distortion "
            f"{run.distortion}, device {device}")
    train(model, sampler, cfg, ckpt=ckpt, device=device, console_log=progress,
          on_checkpoint=on_checkpoint)
    entry = None
    if distributed.is_main():
        steps, command = _history(run, run.steps, command)
        entry = registry.export_base(model.cpu(), domain=run.domain, quality=run.quality,
                                     lam=lam, steps=steps, command=command,
                                     train_images=len(files), generation=run.generation)
    distributed.finish()
    return entry
