"""Forward passes and what they are checked for: one autocast context, validation (loss and
local DER over the development chunks, summed across ranks before dividing), and the cause
of a non-finite training loss."""

from __future__ import annotations

from typing import Any, Dict, Iterable

import torch

from core.local_der import der_from_sums, der_sums
from train.config import Config
from train.distributed import World, reduce_sums
from train.loss import segmentation_loss
from train.metrics import Sums

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


def nonfinite_cause(model: torch.nn.Module, batch: Dict[str, Any]) -> str:
    """Why the loss of `batch` is not finite, in words a user can act on: non-finite inputs
    (naming their files and start times), non-finite weights, or neither."""
    masks = {"video": batch.get("video_mask")}
    for name in ("waveforms", "video"):
        x = batch.get(name)
        if not isinstance(x, torch.Tensor):
            continue
        finite = torch.isfinite(x)
        if masks.get(name) is not None:  # frames marked missing may hold anything
            finite |= ~masks[name].unsqueeze(-1)
        bad = (~finite.flatten(1).all(1)).nonzero().flatten().tolist()
        if bad:
            uris, starts = batch.get("uri") or [], batch.get("start_s")
            where = ", ".join(
                f"{uris[i] if i < len(uris) else i}"
                + (f" at {float(starts[i]):.2f} s" if starts is not None else "")
                for i in bad[:3])
            return (f"the {name} of {len(bad)} chunk(s) hold NaN or inf ({where}): check "
                    "those files")
    bad_weights = [name for name, w in model.named_parameters() if not torch.isfinite(w).all()]
    if bad_weights:
        return (f"the weights are not finite ({len(bad_weights)} tensors, e.g. "
                f"{bad_weights[0]}): training diverged")
    return "inputs and weights are finite: the computation overflowed or training diverged"
