"""The state of one training run: `Progress`, the counters a checkpoint holds next to the
weights (train/checkpoint.py), and `Run`, everything the loop's steps share (train/loop.py).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Dict

import torch

from train.config import Config
from train.data_adapter import Data
from train.distributed import World
from train.logging import NullLog
from train.metrics import Sums


@dataclass
class Progress:
    """Where training stands: the counters a checkpoint holds next to the weights.

    step: optimizer steps done; epoch, batch_in_epoch: the next batch to train on;
    best_der, best_step: the best validation DER so far and its step (inf, -1: none yet);
    bad_validations: validations since the best (early stopping); nonfinite_in_row:
    steps skipped in a row for a non-finite loss."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_der: float = math.inf
    best_step: int = -1
    bad_validations: int = 0
    nonfinite_in_row: int = 0

    @classmethod
    def from_checkpoint(cls, state: Dict[str, Any]) -> "Progress":
        return cls(**{f.name: type(f.default)(state[f.name]) for f in dataclasses.fields(cls)})

    def as_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Run:
    """One training run: its settings, what it trains with, and where it stands."""

    config: Config
    world: World
    log: NullLog
    model: torch.nn.Module          # the module itself (checkpoints, parameters)
    ddp: torch.nn.Module            # what the forward pass calls: DDP-wrapped, or the model
    data: Data
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    total_steps: int
    version: str                    # code version written into checkpoints
    progress: Progress
    val: Dict[str, float] = field(default_factory=dict)   # the last validation's metrics
    saved_at: int = 0               # step of the newest checkpoint written
    status: int = 0                 # 0 ok, 1 failed (non-finite losses)
    preempted: bool = False
    stopped_early: bool = False
    nonfinite_cause: str = ""       # why the latest non-finite loss was not finite
    window: Sums = field(default_factory=Sums)            # train/* sums since the last log
    window_start: float = field(default_factory=time.perf_counter)

    @property
    def finished(self) -> bool:
        p = self.progress
        return bool(self.status or self.preempted or self.stopped_early
                    or p.step >= self.total_steps or p.epoch >= self.config.epochs)
