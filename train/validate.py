"""Forward passes outside the optimizer step: one autocast context, and validation (loss and
local DER over the development chunks, summed across ranks before dividing)."""

from __future__ import annotations

from typing import Any, Dict, Iterable

import torch

from train.config import Config
from train.distributed import World, reduce_sums
from train.loss import segmentation_loss
from train.metrics import Sums, der_from_sums, der_sums

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def to_device(batch: Dict[str, Any], device: torch.device) -> Dict[str, Any]:
    """The batch's tensors on `device` (non-blocking from pinned memory); the rest as is."""
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
            for k, v in batch.items()}


def forward(model: torch.nn.Module, batch: Dict[str, Any], amp: str,
            device: torch.device) -> torch.Tensor:
    """scores (batch, frame, class) under one autocast context (off: plain float32)."""
    with torch.autocast(device.type, dtype=AMP_DTYPES.get(amp, torch.float32),
                        enabled=amp != "off"):
        return model(batch["waveforms"], video=batch.get("video"),
                     video_mask=batch.get("video_mask"))


@torch.no_grad()
def validate(model: torch.nn.Module, batches: Iterable[Dict[str, Any]], config: Config,
             world: World) -> Dict[str, float]:
    """Loss and local DER (der, false_alarm, missed, confusion) over the development chunks,
    summed across ranks before dividing."""
    was_training = model.training
    model.eval()
    sums = Sums()
    with torch.random.fork_rng(devices=[]):  # validating must not move the training streams
        batch_iterator = iter(batches)
    for batch in batch_iterator:
        batch = to_device(batch, world.device)
        scores = forward(model, batch, config.amp, world.device)
        loss = segmentation_loss(scores, batch["target"], model.powerset)
        size = batch["waveforms"].shape[0]
        sums.add(loss=float(loss) * size, chunks=size,
                 **der_sums(scores, batch["target"], model.powerset))
    model.train(was_training)
    total = reduce_sums(sums.values, world)
    return {"loss": total.get("loss", 0.0) / max(1.0, total.get("chunks", 0.0)),
            **der_from_sums(total)}
