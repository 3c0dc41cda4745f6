"""Data-parallel training on many processes (``torchrun``), with PyTorch DDP.

``torchrun --nproc_per_node N nicodec train ...`` starts N copies of the command; each finds
its rank in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), trains on its own
shard of the images with its own crops and noise, and the gradients are averaged across
ranks at every step (gloo on CPU, NCCL on CUDA), so all ranks hold the same weights. Rank 0
alone writes checkpoints, exports and prints. One process without ``torchrun`` is the
ordinary single-process run, unchanged.
"""

from __future__ import annotations

import datetime
import os
from typing import Sequence, TypeVar

import torch
import torch.distributed as dist
import torch.nn as nn

T = TypeVar("T")


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    """True in the process that writes files and prints (rank 0, or the only one)."""
    return rank() == 0


def init(device: str) -> str:
    """Join the process group when started by torchrun; returns this rank's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    cuda = device.startswith("cuda")
    dist.init_process_group("nccl" if cuda else "gloo",
                            timeout=datetime.timedelta(minutes=30))
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return device


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items`` (every ``world_size``-th, from ``rank``); every rank
    gets at least one."""
    n, r = world_size(), rank()
    mine = list(items[r::n])
    return mine or [items[r % len(items)]]


def wrap(model: nn.Module, aux_names: Sequence[str]) -> nn.Module:
    """``model`` in DDP (the identity on one process). The entropy model's quantiles
    (``aux_names``) train on a separate loss after the main step: DDP ignores them and
    :func:`average_grads` syncs theirs."""
    if world_size() == 1:
        return model
    nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
        model, list(aux_names))
    device = next(model.parameters()).device
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[device] if device.type == "cuda" else None)


def average_grads(params: Sequence[torch.Tensor]) -> None:
    """Average the gradients of ``params`` over all ranks (one flat all-reduce)."""
    if world_size() == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    i = 0
    for g in grads:
        g.copy_(flat[i:i + g.numel()].view_as(g))
        i += g.numel()


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def finish() -> None:
    """Leave the process group (at the end of a torchrun command)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
