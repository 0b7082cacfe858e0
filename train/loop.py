"""The training loop, top to bottom: `train(config) -> dict`.

    world   torchrun's environment (train/distributed.py); world size 1 without torchrun
    resume  --resume auto: the newest complete checkpoint of the experiment, if any
    model   built, or loaded from --checkpoint (--finetune), parts frozen, DDP-wrapped
    data    rank-local map-style batches: batch k of epoch e is the same after a restart
    loop    autocast forward -> float32 permutation-invariant loss -> (scaled) backward ->
            unscale, clip -> step; every rank agrees on skip/stop at each step
    every   log_every: train/* scalars and a progress line; val_every (or each epoch):
            local DER on the fixed development chunks, best.pt, early stopping;
            checkpoint_every: step-N.pt. SIGUSR1/SIGTERM/stop file: save, exit 0.
"""

from __future__ import annotations

import hashlib
import math
import random
import sys
import time
import warnings
from typing import Any, Callable, Dict, Iterable, Optional

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from core import build_model, load_pretrained
from core.local_der import der_from_sums, der_sums
from core.models import checkpoint_hparams
from core.parts import freeze, summary
from train import data_adapter
from train.checkpoint import (
    FORMAT,
    code_version,
    find_resume,
    load_checkpoint,
    prune_step_checkpoints,
    reseed_cudnn_dropout,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from train.config import Config
from train.distributed import (
    World,
    any_rank,
    broadcast_object,
    distributed,
    gather_objects,
    reduce_sums,
)
from train.logging import make_log
from train.loss import segmentation_loss
from train.metrics import Sums
from train.optim import build_optimizer, build_scheduler
from train.preemption import StopRequest

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
DataFactory = Callable[[Config, torch.nn.Module, World], data_adapter.Data]


def train(config: Config, data_factory: Optional[DataFactory] = None) -> Dict[str, Any]:
    """Train as `config` says; returns final metrics, counters and checkpoint paths.

    data_factory(config, model, world) -> Data replaces the protocol's data (data/), e.g.
    with train.toydata.ToyData in tests and benchmarks.

    Keys: status (0 ok, 1 failed), step, epoch, best_der, best_step, val (last validation
    metrics), preempted, stopped_early, experiment_dir, last_checkpoint, best_checkpoint.
    """
    # signals are remembered from the start (index building can take minutes)
    with distributed(config.device) as world, StopRequest(config.experiment_dir / "STOP") as stop:
        return run(config, world, data_factory or data_adapter.build, stop)


def seed_all(*parts: Any) -> None:
    """Seed python, numpy and torch from a stable hash of `parts` (e.g. seed, rank)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    seed = int.from_bytes(digest[:4], "little")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_model(config: Config, saved_hparams: Optional[Dict[str, Any]] = None) -> torch.nn.Module:
    """The model: rebuilt from a checkpoint's hparams, loaded (--finetune), or new."""
    if saved_hparams is not None:
        return build_model(**checkpoint_hparams(saved_hparams))
    backbone: Dict[str, Any] = {}
    lstm = {k: v for k, v in (("hidden_size", config.lstm_hidden),
                              ("num_layers", config.lstm_layers),
                              ("dropout", config.lstm_dropout)) if v is not None}
    if lstm:
        backbone["lstm"] = lstm
    if config.linear_hidden is not None:
        backbone["linear"] = {"hidden_size": config.linear_hidden}
    fusion = {k: v for k, v in (("d_model", config.d_model), ("num_layers", config.fusion_layers),
                                ("num_heads", config.fusion_heads),
                                ("locality_tau_s", config.locality_tau),
                                ("video_centering", config.video_centering),
                                ("learned_locality", config.learned_locality),
                                ("modality_dropout", config.modality_dropout)) if v is not None}
    if config.finetune:
        if backbone:
            raise ValueError("--lstm-*/--linear-hidden change the pretrained architecture; "
                             "they cannot be used with --finetune")
        model = load_pretrained(config.checkpoint, model=config.model, esize=config.esize,
                                revision=config.revision, token=config.hf_token,
                                video_fps=config.video_fps, **fusion)
        if config.duration is not None:
            model.duration_s = float(config.duration)
        return model
    duration = 10.0 if config.duration is None else float(config.duration)
    return build_model(config.model, esize=config.esize, video_fps=config.video_fps,
                       duration_s=duration, **backbone, **fusion)


def to_device(batch: Dict[str, Any], device: torch.device) -> Dict[str, Any]:
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


def run(config: Config, world: World, data_factory: DataFactory,
        stop: StopRequest) -> Dict[str, Any]:
    exp = config.experiment_dir
    ckpt_dir = exp / "checkpoints"

    # --- resume: rank 0 picks the checkpoint, every rank reads it ------------------------
    resume_path = None
    if config.resume == "auto":
        resume_path = broadcast_object(
            str(find_resume(ckpt_dir) or "") if world.is_main else None, world) or None
    elif config.resume != "never":
        resume_path = config.resume
    state = load_checkpoint(resume_path) if resume_path else None
    start_step = int(state["step"]) if state else 0

    log = make_log(world.is_main, exp, purge_step=start_step + 1 if state else None)
    if world.is_main:
        config.save()
    version = code_version()
    log.info(f"experiment {exp}  world size {world.world_size}  device {world.device}  "
             f"code {version}")
    if state:
        log.info(f"resuming from {resume_path} at step {start_step}")
        changed = {k: (v, config.to_dict().get(k)) for k, v in state["config"].items()
                   if k not in ("resume", "hf_token") and config.to_dict().get(k) != v}
        if changed:
            log.info("settings that differ from the checkpoint's (checkpoint -> now; the "
                     "architecture stays the checkpoint's): " + ", ".join(
                         f"{k}: {a} -> {b}" for k, (a, b) in sorted(changed.items())))
    log.text("config", "```\n" + config_text(config) + "\n```", 0)

    # --- model, frozen parts, optimizer -------------------------------------------------
    seed_all(config.seed)  # the same initialisation on every rank
    model = make_model(config, state["model_hparams"] if state else None)
    if state:
        model.load_state_dict(state["model_state"])
    if config.freeze:
        freeze(model, config.freeze)
    model.to(world.device).train()
    log.info("parameters:\n" + summary(model))

    data = data_factory(config, model, world)
    if getattr(data, "summary", None):
        log.info(data.summary)
    total_steps = config.epochs * data.batches_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)

    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, total_steps)
    scaler = torch.amp.GradScaler(world.device.type, enabled=config.amp == "fp16")
    step, epoch, batch_in_epoch = start_step, 0, 0
    best_der, best_step, bad_validations, nonfinite_in_row = math.inf, -1, 0, 0
    if state:
        optimizer.load_state_dict(state["optimizer_state"])
        scheduler.load_state_dict(state["scheduler_state"])
        scaler.load_state_dict(state["scaler_state"])
        epoch, batch_in_epoch = int(state["epoch"]), int(state["batch_in_epoch"])
        best_der, best_step = float(state["best_der"]), int(state["best_step"])
        bad_validations = int(state["bad_validations"])
        nonfinite_in_row = int(state["nonfinite_in_row"])
    ddp = model
    if world.is_distributed:
        ddp = DistributedDataParallel(
            model, device_ids=[world.local_rank] if world.device.type == "cuda" else None)
    if state and len(state["rng"]) == world.world_size:
        set_rng_state(state["rng"][world.rank])
    else:
        if state:
            log.info(f"world size changed ({len(state['rng'])} -> {world.world_size}): "
                     "random streams reseeded, the trajectory differs from an unbroken run")
        seed_all(config.seed, world.rank, start_step)

    def checkpoint(*names: str, val: Optional[Dict[str, float]] = None) -> None:
        """Save last.pt (and best.pt / step-N.pt) on rank 0; every rank must call it."""
        rngs = gather_objects(rng_state(), world)
        if not world.is_main:
            return
        state_now = {
            "format": FORMAT, "model_state": model.state_dict(), "model_hparams": model.hparams,
            "optimizer_state": optimizer.state_dict(), "scheduler_state": scheduler.state_dict(),
            "scaler_state": scaler.state_dict(), "step": step, "epoch": epoch,
            "batch_in_epoch": batch_in_epoch, "best_der": best_der, "best_step": best_step,
            "bad_validations": bad_validations, "nonfinite_in_row": nonfinite_in_row,
            "rng": rngs, "world_size": world.world_size, "config": config.to_dict(),
            "code_version": version, "metrics": dict(val or {})}
        state_now["config"]["hf_token"] = None
        paths = [ckpt_dir / "last.pt"]
        paths += [ckpt_dir / f"{name}.pt" for name in names]
        save_checkpoint(state_now, paths)
        prune_step_checkpoints(ckpt_dir, config.keep_checkpoints)

    def validation(now: int) -> Dict[str, float]:
        """Validate, log val/*, update best and patience, save last.pt (+ best.pt)."""
        nonlocal best_der, best_step, bad_validations
        metrics = validate(model, data.validation(), config, world)
        log.scalars({f"val/{k}": v for k, v in metrics.items()}, now)
        improved = metrics["der"] < best_der - 1e-9
        if improved:
            best_der, best_step, bad_validations = metrics["der"], now, 0
        else:
            bad_validations += 1
        log.info(f"validation step {now}: DER {100 * metrics['der']:.2f}% (FA "
                 f"{100 * metrics['false_alarm']:.2f} miss {100 * metrics['missed']:.2f} conf "
                 f"{100 * metrics['confusion']:.2f}) loss {metrics['loss']:.4f}  best "
                 f"{100 * best_der:.2f}% @ {best_step}")
        checkpoint(*(["best"] if improved else []), val=metrics)
        return metrics

    # --- the loop --------------------------------------------------------------------
    val: Dict[str, float] = {}
    if state is None and config.val_at_start:
        val = validation(0)
    status, preempted, stopped_early, saved_at = 0, False, False, (step if state else 0)
    chunks_per_step = config.batch_size * world.world_size
    window = Sums()
    t_window = time.perf_counter()
    while step < total_steps and epoch < config.epochs and not (preempted or stopped_early):
        with torch.random.fork_rng(devices=[]):  # creating the loader must not draw
            batches = iter(data.train(epoch, batch_in_epoch))
        t_wait = time.perf_counter()
        for batch in batches:
            batch = to_device(batch, world.device)
            window.add(wait_s=time.perf_counter() - t_wait)

            if config.exact_resume:  # LSTM dropout masks from the state checkpoints save
                reseed_cudnn_dropout(world.device)
            scores = forward(ddp, batch, config.amp, world.device)
            loss = segmentation_loss(scores, batch["target"], model.powerset)
            nonfinite, stop_now = any_rank([not bool(torch.isfinite(loss)), stop.local()],
                                           world)
            optimizer.zero_grad(set_to_none=True)
            if nonfinite:
                nonfinite_in_row += 1
                window.add(nonfinite=1)
            else:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                params = [p for p in model.parameters() if p.grad is not None]
                grad_norm = torch.nn.utils.clip_grad_norm_(
                    params, config.grad_clip if config.grad_clip else float("inf"))
                scaler.step(optimizer)
                scaler.update()
                nonfinite_in_row = 0
                window.add(loss=float(loss.detach()), losses=1)
                if math.isfinite(float(grad_norm)):  # fp16 overflow steps are skipped
                    window.add(grad_norm=float(grad_norm), norms=1)
            with warnings.catch_warnings():  # skipped steps (fp16 overflow, non-finite)
                warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step")
                scheduler.step()
            step += 1
            batch_in_epoch += 1
            end_of_epoch = batch_in_epoch >= data.batches_per_epoch
            if end_of_epoch:
                epoch, batch_in_epoch = epoch + 1, 0
            window.add(steps=1)

            if nonfinite_in_row >= config.max_nonfinite:
                log.info(f"step {step}: {nonfinite_in_row} non-finite losses in a row; "
                         "stopping. Lower --lr, use --amp bf16 instead of fp16, or "
                         "--grad-clip; the last good checkpoint is checkpoints/last.pt")
                print(f"training stopped: {nonfinite_in_row} non-finite losses in a row "
                      f"at step {step} (see {exp / 'train.log'})", file=sys.stderr)
                status = 1
                break
            if step % config.log_every == 0 or step == total_steps:
                elapsed = time.perf_counter() - t_window
                log_progress(log, window, world, optimizer, scaler, config, step, epoch,
                             total_steps, elapsed, chunks_per_step, val)
                window, t_window = Sums(), time.perf_counter()
            if (config.val_every and step % config.val_every == 0) or (
                    not config.val_every and end_of_epoch):
                val = validation(step)
                saved_at = step
                if config.patience and bad_validations >= config.patience:
                    log.info(f"early stopping at step {step}: no better DER in "
                             f"{bad_validations} validations (best step {best_step})")
                    stopped_early = True
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                checkpoint(f"step-{step:07d}", val=val)
                saved_at = step
            if stop_now:
                preempted = True
                if saved_at != step:
                    checkpoint(val=val)
                    saved_at = step
                log.info(f"stop requested ({stop.reason()}): checkpoint at step {step} "
                         f"saved; resume with the same command (--resume auto)")
                if world.is_main:
                    stop.clear_file()
            if stopped_early or preempted or step >= total_steps or end_of_epoch:
                break
            t_wait = time.perf_counter()
        else:  # the loader ran out before its announced length
            raise RuntimeError(
                f"the training loader of epoch {epoch} stopped at batch {batch_in_epoch} "
                f"of {data.batches_per_epoch}")
        if status:
            break

    if status == 0 and saved_at != step:
        checkpoint(val=val)
    if status == 0 and not preempted:
        log.hparams(hparams_of(config), {"hparams/best_der": best_der if best_der < math.inf
                                         else float("nan"),
                                         "hparams/final_step": float(step)}, step)
    log.info(f"done at step {step} (epoch {epoch}): best DER "
             f"{100 * best_der:.2f}% at step {best_step}" if best_der < math.inf
             else f"done at step {step} (epoch {epoch})")
    log.close()
    best_path = ckpt_dir / "best.pt"
    return {"status": status, "step": step, "epoch": epoch, "best_der": best_der,
            "best_step": best_step, "val": val, "preempted": preempted,
            "stopped_early": stopped_early, "experiment_dir": str(exp),
            "last_checkpoint": str(ckpt_dir / "last.pt"),
            "best_checkpoint": str(best_path) if best_path.exists() else None}


def log_progress(log, window: Sums, world: World, optimizer, scaler, config: Config, step: int,
                 epoch: int, total_steps: int, elapsed: float, chunks_per_step: int,
                 val: Dict[str, float]) -> None:
    """train/*, perf/*, memory/* scalars and one progress line; sums reduced across ranks."""
    sums = reduce_sums(window.values, world)
    steps = max(1.0, window.values.get("steps", 1.0))
    scalars: Dict[str, float] = {}
    if sums.get("losses"):
        scalars["train/loss"] = sums["loss"] / sums["losses"]
    if sums.get("norms"):
        scalars["train/grad_norm"] = sums["grad_norm"] / sums["norms"]
    for i, group in enumerate(optimizer.param_groups):
        scalars[f"train/lr/{group.get('name', i)}"] = group["lr"]
    if config.amp == "fp16":
        scalars["train/grad_scale"] = float(scaler.get_scale())
    scalars["perf/chunks_per_s"] = steps * chunks_per_step / max(elapsed, 1e-9)
    scalars["perf/data_wait_fraction"] = sums.get("wait_s", 0.0) / max(
        elapsed * world.world_size, 1e-9)
    if sums.get("nonfinite"):
        scalars["train/nonfinite_steps"] = sums["nonfinite"] / world.world_size
    if world.device.type == "cuda":
        scalars["memory/max_allocated_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
    log.scalars(scalars, step)
    eta_s = (total_steps - step) * elapsed / steps
    der = f"{100 * val['der']:.2f}%" if "der" in val else "-"
    log.info(f"step {step}/{total_steps} epoch {epoch} loss "
             f"{scalars.get('train/loss', float('nan')):.4f} DER {der} "
             f"{scalars['perf/chunks_per_s']:.1f} chunks/s ETA {format_duration(eta_s)}")


def format_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def config_text(config: Config) -> str:
    return "\n".join(f"{k}: {v}" for k, v in sorted(config.to_dict().items())
                     if k != "hf_token")


def hparams_of(config: Config) -> Dict[str, Any]:
    keys = ("model", "finetune", "esize", "duration", "batch_size", "lr", "lr_pretrained",
            "weight_decay", "scheduler", "grad_clip", "amp", "freeze", "modality_dropout",
            "seed", "epochs")
    values = config.to_dict()
    return {k: (",".join(values[k]) if isinstance(values[k], list) else values[k])
            for k in keys}

