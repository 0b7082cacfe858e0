"""Optimizer and learning-rate schedule: Adam as pyannote, two parameter groups.

Group "pretrained" (sincnet, lstm, linear, classifier) runs at --lr-pretrained (default
--lr); group "fusion" (co-attention and model 8's projections) at --lr. Frozen parameters
are in no group. The schedule is a LambdaLR (linear warm-up, then constant, cosine or
linear decay to 0 at `total_steps`), whose state is plain numbers.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict

import torch
from torch import nn

from core.parts import param_groups
from train.config import Config


def build_optimizer(model: nn.Module, config: Config) -> torch.optim.Optimizer:
    """Adam (AdamW when --weight-decay > 0) over the trainable parameters of `model`."""
    lr_pretrained = config.lr if config.lr_pretrained is None else config.lr_pretrained
    groups = param_groups(model, lr=lr_pretrained, fusion_lr=config.lr,
                          weight_decay=config.weight_decay)
    if not groups:
        raise ValueError("every parameter is frozen (--freeze/--freeze-lstm): nothing to train")
    if config.weight_decay > 0:
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(groups, lr=config.lr)


def lr_factor(scheduler: str, warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate at optimizer step `step` (0-based)."""
    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        if scheduler == "constant" or total_steps <= warmup_steps:
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if scheduler == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress  # linear

    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, config: Config,
                    total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule over `total_steps` optimizer steps."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_factor(config.scheduler, config.warmup_steps, total_steps))


def load_state(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR,
               optimizer_state: Dict[str, Any], scheduler_state: Dict[str, Any]) -> None:
    """Continue from a checkpoint's optimizer and schedule under this run's settings.

    From the checkpoint: Adam's moments and step counts, the schedule's step. From the
    settings `optimizer` and `scheduler` were built with: every group's hyper-parameters
    (learning rates, weight decay) and the schedule (kind, warm-up, total steps). So a resumed
    run with --lr changed trains at the new rate; with nothing changed the learning rates are
    exactly the checkpoint's (base rate x the same factor at the same step)."""
    settings = [{k: v for k, v in group.items() if k != "params"}
                for group in optimizer.param_groups]
    base_lrs = list(scheduler.base_lrs)
    optimizer.load_state_dict(optimizer_state)
    scheduler.load_state_dict(scheduler_state)
    scheduler.base_lrs = base_lrs
    for group, kept, base, factor in zip(optimizer.param_groups, settings, base_lrs,
                                         scheduler.lr_lambdas):
        group.update(kept)
        group["initial_lr"] = base
        group["lr"] = base * factor(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
