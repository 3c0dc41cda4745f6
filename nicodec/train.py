"""Rate-distortion training: base models, and (in :mod:`nicodec.adapt`) adapters.

Loss (CompressAI's convention): ``J = R + lambda * 255^2 * MSE`` with R in bits per pixel
estimated from the uniform-noise proxy, MSE on [0, 1] images (or, with ``distortion="psnr"``,
the geometric mean of the crops' MSEs: :func:`psnr_distortion`). The entropy model's
quantiles are fitted by a separate auxiliary loss with its own optimizer.

Checkpoints are safetensors (model and Adam state) plus a JSON sidecar; training resumes from
them. Nothing is pickled.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from safetensors.torch import load_file

from nicodec import distributed, modelfile
from nicodec.data import CropSampler
from nicodec.errors import NicodecError
from nicodec.inference import bf16_is_fast


class TrainingDiverged(NicodecError):
    """The loss stopped being a finite number: this learning rate is too high."""

    def __init__(self, step: int, lr: float):
        super().__init__(f"training diverged at step {step} (the loss is no longer a finite "
                         f"number) at learning rate {lr:g}; try a lower --lr")
        self.step, self.lr = step, lr


@dataclass
class TrainConfig:
    lam: float
    steps: int
    batch: int = 8
    crop: int = 128
    lr: float = 3e-4
    lr_drop_at: float = 0.8  # fraction of steps after which lr is divided by 3
    aux_lr: float = 1e-3
    clip: float = 1.0
    round_for_synthesis: bool = False  # see TransformCoder.forward
    # Train only the synthesis g_s, on rounded latents (implies round_for_synthesis); the
    # analysis and the entropy model stay frozen, so the codec's rates do not change. See
    # :func:`freeze_for_synthesis_tuning`.
    synthesis_only: bool = False
    # The distortion of the loss: "mse", or "psnr" (the geometric mean of the crops' MSEs,
    # whose PSNR is their mean PSNR; see :func:`psnr_distortion`).
    distortion: str = "mse"
    # The fast path (see :func:`fast_settings`): channels_last, and bf16 transforms where the
    # hardware computes bf16 natively. ``compile``: torch.compile the training forward; None
    # means when at least COMPILE_MIN_STEPS steps remain (compiling takes 15-45 s on 2 cores).
    fast: bool = True
    compile: bool | None = None
    seed: int = 0
    start: int = 0  # the step a warm start resumes at (when there is no checkpoint)
    label: str = "train"  # the progress bar's label
    log_every: int = 50
    ckpt_every: int = 500
    extra: dict = field(default_factory=dict)


COMPILE_MIN_STEPS = 1000
RANK_SEED_STRIDE = 1_000_003  # rank r draws crops from seed + r * this


def fast_settings(cfg: "TrainConfig", device: str, steps_left: int):
    """(memory format, transform dtype, compile?) of a run: the fastest path that keeps
    results right. Weights, latents, likelihoods and the loss stay float32."""
    if not cfg.fast:
        return torch.contiguous_format, None, False
    dtype = torch.bfloat16 if bf16_is_fast(device) else None
    compile_ = cfg.compile if cfg.compile is not None else steps_left >= COMPILE_MIN_STEPS
    return torch.channels_last, dtype, compile_


def rd_terms(out: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(bpp, mse) of a training forward pass; mse on [0, 1] scale."""
    n_pix = x.shape[0] * x.shape[2] * x.shape[3]
    bpp = -torch.log2(out["likelihoods"]).sum() / n_pix
    mse = torch.mean((out["x_hat"] - x) ** 2)
    return bpp, mse


DISTORTIONS = ("mse", "psnr")
PSNR_FLOOR = 1e-5  # added to each crop's MSE on [0, 1] (50 dB): a flat crop cannot dominate


def psnr_distortion(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The geometric mean of the crops' MSEs, ``exp(mean_i log MSE_i)``: the MSE whose PSNR
    is the crops' mean PSNR (each MSE plus :data:`PSNR_FLOOR`).

    Its gradient is each crop's MSE gradient weighted by ``GM / MSE_i``: plain MSE lets a
    smooth crop's error count for as little as its MSE, while the mean PSNR that
    evaluations report counts every crop's *relative* error alike (a smooth photo coded at
    37 dB where 45 dB were possible costs as much as a textured one 8 dB short). Its value
    is on MSE's scale, so ``lambda`` keeps its meaning."""
    per_crop = ((x_hat - x) ** 2).flatten(1).mean(1) + PSNR_FLOOR
    return torch.exp(torch.log(per_crop).mean()) - PSNR_FLOOR


def rd_loss(out: dict, x: torch.Tensor, lam: float, distortion: str = "mse"):
    """``(J, bpp, mse)``: ``J = bpp + lambda * 255^2 * D`` with ``D`` the MSE or, for
    ``distortion="psnr"``, :func:`psnr_distortion`; the returned ``mse`` is plain."""
    bpp, mse = rd_terms(out, x)
    d = mse if distortion == "mse" else psnr_distortion(out["x_hat"], x)
    loss = bpp + lam * 255 ** 2 * d
    if "fit_bits" in out:  # a model fitted beside the codec, on detached inputs (JointCodec)
        loss = loss + out["fit_bits"] / (x.shape[0] * x.shape[2] * x.shape[3])
    return loss, bpp, mse


def psnr_from_mse(mse: float) -> float:
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def freeze_for_synthesis_tuning(model: nn.Module) -> None:
    """Leave only those of ``model.synthesis_parameters()`` trainable that were trainable
    (an adapter's frozen base stays frozen).

    The decoder of a model trained under the uniform-noise proxy has only ever seen
    ``y + u``, ``u ~ U(-1/2, 1/2)`` independent per element, but decodes
    ``y_hat = round(y - median) + median``, whose error is a deterministic function of the
    image. With ``g_a`` and the entropy model frozen, the symbols ``q = round(y - median)``
    and their probabilities (so every file's size) are fixed, and training ``g_s`` on
    ``y_hat`` minimises the distortion the decoder actually produces: the loss's rate term
    is a constant.
    """
    keep = {id(p) for p in model.synthesis_parameters()}
    for p in model.parameters():
        p.requires_grad_(p.requires_grad and id(p) in keep)


def _main_and_aux_params(model: nn.Module):
    main, aux = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (aux if name.endswith("quantiles") else main).append(p)
    return main, aux


def _opt_state_tensors(opt: torch.optim.Optimizer, prefix: str) -> dict[str, torch.Tensor]:
    out = {}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"{prefix}.{i}.{k}"] = torch.as_tensor(v).contiguous().clone()
    return out


def _load_opt_state(opt: torch.optim.Optimizer, tensors: dict, prefix: str) -> None:
    sd = opt.state_dict()
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith(prefix + "."):
            _, i, k = key.split(".", 2)
            state.setdefault(int(i), {})[k] = v
    sd["state"] = state
    opt.load_state_dict(sd)


def save_checkpoint(path: Path, model: nn.Module, opt, aux_opt, step: int, meta: dict) -> None:
    tensors = {f"model.{k}": v.detach().clone().contiguous()
               for k, v in model.state_dict().items() if v.numel()}
    tensors |= _opt_state_tensors(opt, "opt")
    if aux_opt is not None:
        tensors |= _opt_state_tensors(aux_opt, "aux")
    modelfile.save(tensors, path, {})
    modelfile.atomic_write(path.with_suffix(".json"),
                           json.dumps({"step": step, **meta}, indent=1).encode())


def load_model_tensors(model: nn.Module, tensors: dict, prefix: str = "model.") -> None:
    sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    # Empty CompressAI buffers (_offset, _quantized_cdf, ...) are not saved.
    missing = [m for m in missing if model.state_dict()[m].numel()]
    if missing or unexpected:
        raise RuntimeError(f"checkpoint mismatch: missing {missing}, unexpected {unexpected}")


def train(model: nn.Module, sampler: CropSampler, cfg: TrainConfig, ckpt: Path | None = None,
          device: str = "cpu", console_log: bool = True,
          on_checkpoint: Callable[[nn.Module, int, dict], None] | None = None) -> dict:
    """Train ``model`` in place; resumes from ``ckpt`` when it exists. Returns last stats.

    Under torchrun each rank passes its own ``sampler`` (its shard of the images, see
    :mod:`nicodec.distributed`); gradients are averaged so every rank ends with the same
    weights, and only rank 0 writes ``ckpt`` and calls ``on_checkpoint(model, step, stats)``
    (every ``ckpt_every`` steps and at the end).
    """
    if cfg.distortion not in DISTORTIONS:
        raise NicodecError(f"distortion must be one of {', '.join(DISTORTIONS)} "
                           f"(got {cfg.distortion!r})")
    rank, main_process = distributed.rank(), distributed.is_main()
    torch.manual_seed(cfg.seed + rank)
    model.to(device).train()
    if cfg.synthesis_only:
        freeze_for_synthesis_tuning(model)
    main, aux = _main_and_aux_params(model)
    # the fast path also steps Adam in one fused kernel (about 1 ms of a CPU step less)
    opt = torch.optim.Adam(main, lr=cfg.lr, fused=cfg.fast or None)
    aux_opt = torch.optim.Adam(aux, lr=cfg.aux_lr) if aux else None
    start = cfg.start
    if ckpt is not None and ckpt.exists():
        tensors = load_file(str(ckpt), device=device)
        load_model_tensors(model, tensors)
        _load_opt_state(opt, tensors, "opt")
        if aux_opt is not None:
            _load_opt_state(aux_opt, tensors, "aux")
        start = json.loads(ckpt.with_suffix(".json").read_text())["step"]
    if start or rank:
        sampler.rng = np.random.default_rng(cfg.seed + start + RANK_SEED_STRIDE * rank)
    memory_format, transform_dtype, compile_ = fast_settings(cfg, device, cfg.steps - start)
    model.to(memory_format=memory_format)
    net = distributed.wrap(model, [n for n, _ in model.named_parameters()
                                   if n.endswith("quantiles")])
    forward = torch.compile(net) if compile_ else net
    stats = {"loss": float("nan"), "bpp": float("nan"), "psnr": float("nan")}
    acc = []
    lr = cfg.lr
    t0 = time.time()
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"),
                  TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                  disable=not (console_log and main_process), transient=False) as progress:
        task = progress.add_task(cfg.label, total=cfg.steps, completed=start, info="")
        for step in range(start, cfg.steps):
            lr = cfg.lr if step < cfg.lr_drop_at * cfg.steps else cfg.lr / 3
            for g in opt.param_groups:
                g["lr"] = lr
            x = torch.from_numpy(sampler.batch(cfg.batch)).to(device)
            x = x.contiguous(memory_format=memory_format)
            out = forward(x, round_for_synthesis=cfg.round_for_synthesis or cfg.synthesis_only,
                          transform_dtype=transform_dtype)
            loss, bpp, mse = rd_loss(out, x, cfg.lam, cfg.distortion)
            if not math.isfinite(loss_value := loss.item()):
                raise TrainingDiverged(step + 1, lr)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip:
                nn.utils.clip_grad_norm_(main, cfg.clip)
            opt.step()
            if aux_opt is not None:
                aux_loss = model.aux_loss()
                aux_opt.zero_grad(set_to_none=True)
                aux_loss.backward()
                distributed.average_grads(aux)
                aux_opt.step()
            acc.append((loss_value, bpp.item(), mse.item()))
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                l, b, m = np.mean(acc, axis=0)
                acc.clear()
                stats = {"loss": float(l), "bpp": float(b), "psnr": psnr_from_mse(float(m))}
                info = f"loss {l:.4f}  bpp {b:.4f}  PSNR {stats['psnr']:.2f} dB"
                progress.update(task, completed=step + 1, info=info)
            if main_process and ((step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.steps):
                if ckpt is not None:
                    save_checkpoint(ckpt, model, opt, aux_opt, step + 1,
                                    {"config": asdict(cfg), "elapsed_s": time.time() - t0,
                                     **stats})
                if on_checkpoint is not None:
                    on_checkpoint(model, step + 1, stats)
    # A NaN step shows in the next step's loss; the last step can only be seen here.
    if not all(bool(torch.isfinite(p).all()) for p in main):
        raise TrainingDiverged(cfg.steps, lr)
    model.to(memory_format=torch.contiguous_format)
    model.eval()
    distributed.barrier()
    return stats
