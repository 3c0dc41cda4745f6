"""Run by tests/test_distributed.py under torchrun: a few training steps on this rank's
shard of synthetic images, then this rank's weights' hash into OUT/rank<R>.txt."""

import sys
from pathlib import Path

import numpy as np
import torch

from nicodec import distributed, modelfile
from nicodec.data import CropSampler
from nicodec.network import FactorizedPrior
from nicodec.train import TrainConfig, train

out = Path(sys.argv[1])
distributed.init("cpu")
rng = np.random.default_rng(0)
images = [rng.integers(0, 256, (64, 80, 3), dtype=np.uint8) for _ in range(4)]
mine = distributed.shard(images)
torch.manual_seed(0)  # the same initial weights on every rank
model = FactorizedPrior()
before = modelfile.content_hash(model.state_dict())
cfg = TrainConfig(lam=0.016, steps=3, batch=2, crop=32, lr=1e-3, log_every=1, compile=False)
train(model, CropSampler(mine, crop=32), cfg, console_log=False)
after = modelfile.content_hash(model.state_dict())
(out / f"rank{distributed.rank()}.txt").write_text(
    f"{before} {after} {len(mine)} {distributed.world_size()}")
distributed.finish()
