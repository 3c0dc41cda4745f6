"""Rate-distortion training: base models, and (in :mod:`nicodec.adapt`) adapters.

Loss (CompressAI's convention): ``J = R + lambda * 255^2 * MSE`` with R in bits per pixel
estimated from the uniform-noise proxy, MSE on [0, 1] images. The entropy model's quantiles
are fitted by a separate auxiliary loss with its own optimizer.

Checkpoints are safetensors (model and Adam state) plus a JSON sidecar; training resumes from
them. Nothing is pickled.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from safetensors.torch import load_file, save_file

from nicodec.data import CropSampler
from nicodec.errors import NicodecError


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
    seed: int = 0
    log_every: int = 50
    ckpt_every: int = 500
    extra: dict = field(default_factory=dict)


def rd_terms(out: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(bpp, mse) of a training forward pass; mse on [0, 1] scale."""
    n_pix = x.shape[0] * x.shape[2] * x.shape[3]
    bpp = -torch.log2(out["likelihoods"]).sum() / n_pix
    mse = torch.mean((out["x_hat"] - x) ** 2)
    return bpp, mse


def rd_loss(out: dict, x: torch.Tensor, lam: float):
    bpp, mse = rd_terms(out, x)
    return bpp + lam * 255 ** 2 * mse, bpp, mse


def psnr_from_mse(mse: float) -> float:
    return 10 * math.log10(1.0 / max(mse, 1e-12))


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
            out[f"{prefix}.{i}.{k}"] = torch.as_tensor(v).clone()
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
    tensors |= _opt_state_tensors(opt, "opt") | _opt_state_tensors(aux_opt, "aux")
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps({"step": step, **meta}, indent=1))


def load_model_tensors(model: nn.Module, tensors: dict, prefix: str = "model.") -> None:
    sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    # Empty CompressAI buffers (_offset, _quantized_cdf, ...) are not saved.
    missing = [m for m in missing if model.state_dict()[m].numel()]
    if missing or unexpected:
        raise RuntimeError(f"checkpoint mismatch: missing {missing}, unexpected {unexpected}")


def train(model: nn.Module, sampler: CropSampler, cfg: TrainConfig, ckpt: Path | None = None,
          device: str = "cpu", console_log: bool = True) -> dict:
    """Train ``model`` in place; resumes from ``ckpt`` when it exists. Returns last stats."""
    torch.manual_seed(cfg.seed)
    model.to(device).train()
    main, aux = _main_and_aux_params(model)
    opt = torch.optim.Adam(main, lr=cfg.lr)
    aux_opt = torch.optim.Adam(aux, lr=cfg.aux_lr)
    start = 0
    if ckpt is not None and ckpt.exists():
        tensors = load_file(str(ckpt), device=device)
        load_model_tensors(model, tensors)
        _load_opt_state(opt, tensors, "opt")
        _load_opt_state(aux_opt, tensors, "aux")
        start = json.loads(ckpt.with_suffix(".json").read_text())["step"]
        sampler.rng = np.random.default_rng(cfg.seed + start)
    stats = {"loss": float("nan"), "bpp": float("nan"), "psnr": float("nan")}
    acc = []
    lr = cfg.lr
    t0 = time.time()
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"),
                  TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                  disable=not console_log, transient=False) as progress:
        task = progress.add_task("train", total=cfg.steps, completed=start, info="")
        for step in range(start, cfg.steps):
            lr = cfg.lr if step < cfg.lr_drop_at * cfg.steps else cfg.lr / 3
            for g in opt.param_groups:
                g["lr"] = lr
            x = torch.from_numpy(sampler.batch(cfg.batch)).to(device)
            out = model(x, round_for_synthesis=cfg.round_for_synthesis)
            loss, bpp, mse = rd_loss(out, x, cfg.lam)
            if not math.isfinite(loss_value := loss.item()):
                raise TrainingDiverged(step + 1, lr)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip:
                nn.utils.clip_grad_norm_(main, cfg.clip)
            opt.step()
            aux_loss = model.aux_loss()
            aux_opt.zero_grad(set_to_none=True)
            aux_loss.backward()
            aux_opt.step()
            acc.append((loss_value, bpp.item(), mse.item()))
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                l, b, m = np.mean(acc, axis=0)
                acc.clear()
                stats = {"loss": float(l), "bpp": float(b), "psnr": psnr_from_mse(float(m))}
                info = f"loss {l:.4f}  bpp {b:.4f}  PSNR {stats['psnr']:.2f} dB"
                progress.update(task, completed=step + 1, info=info)
            if ckpt is not None and ((step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.steps):
                save_checkpoint(ckpt, model, opt, aux_opt, step + 1,
                                {"config": asdict(cfg), "elapsed_s": time.time() - t0, **stats})
    # A NaN step shows in the next step's loss; the last step can only be seen here.
    if not all(bool(torch.isfinite(p).all()) for p in main):
        raise TrainingDiverged(cfg.steps, lr)
    model.eval()
    return stats
