"""The training loop, top to bottom: `train(config) -> dict`.

    world    torchrun's environment (train/distributed.py); world size 1 without torchrun
    resume   --resume auto: the newest complete checkpoint of the experiment, if any
    start    log and config.json; model built, or loaded from --checkpoint (--finetune), parts
             frozen, DDP-wrapped; optimizer, schedule, scaler; a checkpoint's state restored
    epochs   rank-local map-style batches: batch k of epoch e is the same after a restart
    step     autocast forward -> float32 permutation-invariant loss -> (scaled) backward ->
             unscale, clip -> step; every rank agrees on skip/stop at each step
    after    log_every: train/* scalars and a progress line; val_every (or each epoch):
             local DER on the fixed development chunks, best.pt, early stopping;
             checkpoint_every: step-N.pt. SIGUSR1/SIGTERM/stop file: save, exit 0.
    finish   last.pt, TensorBoard hparams, the result dict

Every step is one function of `Run`, the run's state: what it trains (model, data,
optimizer, schedule, scaler) and where it stands (`Progress`, the counters a checkpoint
holds: train/checkpoint.py).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

import torch
from torch.nn.parallel import DistributedDataParallel

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
from train.logging import NullLog, config_text, format_duration, hparams_of, make_log
from train.loss import segmentation_loss
from train.metrics import Sums
from train.model import make_model, seed_all
from train.optim import build_optimizer, build_scheduler
from train.preemption import StopRequest
from train.validate import forward, to_device, validate

__all__ = ["train", "make_model", "seed_all", "validate", "Progress", "Run"]

DataFactory = Callable[[Config, torch.nn.Module, World], data_adapter.Data]


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
    data: data_adapter.Data
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
    window: Sums = field(default_factory=Sums)            # train/* sums since the last log
    window_start: float = field(default_factory=time.perf_counter)

    @property
    def finished(self) -> bool:
        p = self.progress
        return bool(self.status or self.preempted or self.stopped_early
                    or p.step >= self.total_steps or p.epoch >= self.config.epochs)


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


def run(config: Config, world: World, data_factory: DataFactory,
        stop: StopRequest) -> Dict[str, Any]:
    """The whole run in `world`: resume point, start, epochs until done, finish."""
    resume_path, state = read_resume(config, world)
    r = start(config, world, data_factory, resume_path, state)
    if state is None and config.val_at_start:
        validation(r)
    r.window_start = time.perf_counter()  # chunks/s counts training only
    while not r.finished:
        train_epoch(r, stop)
    return finish(r)


# --- resume and start -------------------------------------------------------------------

def read_resume(config: Config, world: World) -> Tuple[Optional[str], Optional[Dict[str, Any]]]:
    """(path, state) of the checkpoint to continue, or (None, None): rank 0 picks the
    checkpoint under --resume auto, every rank reads it."""
    resume_path = None
    if config.resume == "auto":
        ckpt_dir = config.experiment_dir / "checkpoints"
        resume_path = broadcast_object(
            str(find_resume(ckpt_dir) or "") if world.is_main else None, world) or None
    elif config.resume != "never":
        resume_path = config.resume
    return resume_path, (load_checkpoint(resume_path) if resume_path else None)


def start(config: Config, world: World, data_factory: DataFactory, resume_path: Optional[str],
          state: Optional[Dict[str, Any]]) -> Run:
    """Open the log, build model, data, optimizer, schedule and scaler, restore `state`."""
    progress = Progress.from_checkpoint(state) if state else Progress()
    log = make_log(world.is_main, config.experiment_dir,
                   purge_step=progress.step + 1 if state else None)
    if world.is_main:
        config.save()
    version = code_version()
    log.info(f"experiment {config.experiment_dir}  world size {world.world_size}  "
             f"device {world.device}  code {version}")
    if state:
        log.info(f"resuming from {resume_path} at step {progress.step}")
        log_changed_settings(log, config, state["config"])
    log.text("config", "```\n" + config_text(config) + "\n```", 0)

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
    if state:
        optimizer.load_state_dict(state["optimizer_state"])
        scheduler.load_state_dict(state["scheduler_state"])
        scaler.load_state_dict(state["scaler_state"])
    ddp = model
    if world.is_distributed:
        ddp = DistributedDataParallel(
            model, device_ids=[world.local_rank] if world.device.type == "cuda" else None)
    restore_random_streams(config, world, log, state, progress.step)
    return Run(config, world, log, model, ddp, data, optimizer, scheduler, scaler, total_steps,
               version, progress, saved_at=progress.step)


def log_changed_settings(log: NullLog, config: Config, saved: Dict[str, Any]) -> None:
    """One line naming the settings that differ from the checkpoint's."""
    now = config.to_dict()
    changed = {k: (v, now.get(k)) for k, v in saved.items()
               if k not in ("resume", "hf_token") and now.get(k) != v}
    if changed:
        log.info("settings that differ from the checkpoint's (checkpoint -> now; the "
                 "architecture stays the checkpoint's): " + ", ".join(
                     f"{k}: {a} -> {b}" for k, (a, b) in sorted(changed.items())))


def restore_random_streams(config: Config, world: World, log: NullLog,
                           state: Optional[Dict[str, Any]], step: int) -> None:
    """This rank's random states from the checkpoint, or fresh streams from (seed, rank,
    step) when there is none or the world size changed."""
    if state and len(state["rng"]) == world.world_size:
        set_rng_state(state["rng"][world.rank])
        return
    if state:
        log.info(f"world size changed ({len(state['rng'])} -> {world.world_size}): "
                 "random streams reseeded, the trajectory differs from an unbroken run")
    seed_all(config.seed, world.rank, step)


# --- the epoch and its steps ------------------------------------------------------------

def train_epoch(r: Run, stop: StopRequest) -> None:
    """Train on the rest of the current epoch, until it ends or the run stops."""
    p = r.progress
    with torch.random.fork_rng(devices=[]):  # creating the loader must not draw
        batches = iter(r.data.train(p.epoch, p.batch_in_epoch))
    t_wait = time.perf_counter()
    for batch in batches:
        batch = to_device(batch, r.world.device)
        r.window.add(wait_s=time.perf_counter() - t_wait)
        stop_now = train_step(r, batch, stop)
        end_of_epoch = advance(r)
        if after_step(r, stop, stop_now, end_of_epoch) or end_of_epoch:
            return
        t_wait = time.perf_counter()
    raise RuntimeError(  # the loader ran out before its announced length
        f"the training loader of epoch {p.epoch} stopped at batch {p.batch_in_epoch} "
        f"of {r.data.batches_per_epoch}")


def train_step(r: Run, batch: Dict[str, Any], stop: StopRequest) -> bool:
    """One optimizer step on `batch` (skipped on every rank when any rank's loss is not
    finite) and one schedule step; returns whether any rank was asked to stop."""
    config, p = r.config, r.progress
    if config.exact_resume:  # LSTM dropout masks from the state checkpoints save
        reseed_cudnn_dropout(r.world.device)
    scores = forward(r.ddp, batch, config.amp, r.world.device)
    loss = segmentation_loss(scores, batch["target"], r.model.powerset)
    nonfinite, stop_now = any_rank([not bool(torch.isfinite(loss)), stop.local()], r.world)
    r.optimizer.zero_grad(set_to_none=True)
    if nonfinite:
        p.nonfinite_in_row += 1
        r.window.add(nonfinite=1)
    else:
        r.scaler.scale(loss).backward()
        r.scaler.unscale_(r.optimizer)
        params = [q for q in r.model.parameters() if q.grad is not None]
        grad_norm = torch.nn.utils.clip_grad_norm_(
            params, config.grad_clip if config.grad_clip else float("inf"))
        r.scaler.step(r.optimizer)
        r.scaler.update()
        p.nonfinite_in_row = 0
        r.window.add(loss=float(loss.detach()), losses=1)
        if math.isfinite(float(grad_norm)):  # fp16 overflow steps are skipped
            r.window.add(grad_norm=float(grad_norm), norms=1)
    with warnings.catch_warnings():  # skipped steps (fp16 overflow, non-finite)
        warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step")
        r.scheduler.step()
    return stop_now


def advance(r: Run) -> bool:
    """Count the step; returns whether it ended the epoch (then the next one starts)."""
    p = r.progress
    p.step += 1
    p.batch_in_epoch += 1
    end_of_epoch = p.batch_in_epoch >= r.data.batches_per_epoch
    if end_of_epoch:
        p.epoch, p.batch_in_epoch = p.epoch + 1, 0
    r.window.add(steps=1)
    return end_of_epoch


def after_step(r: Run, stop: StopRequest, stop_now: bool, end_of_epoch: bool) -> bool:
    """What follows a step: the non-finite guard, logging, validation and early stopping,
    step-N.pt, preemption. Returns whether the run stops here."""
    config, p = r.config, r.progress
    if p.nonfinite_in_row >= config.max_nonfinite:
        give_up_nonfinite(r)
        return True
    if p.step % config.log_every == 0 or p.step == r.total_steps:
        log_progress(r)
    if (config.val_every and p.step % config.val_every == 0) or (
            not config.val_every and end_of_epoch):
        validation(r)
        if config.patience and p.bad_validations >= config.patience:
            r.log.info(f"early stopping at step {p.step}: no better DER in "
                       f"{p.bad_validations} validations (best step {p.best_step})")
            r.stopped_early = True
    if config.checkpoint_every and p.step % config.checkpoint_every == 0:
        save(r, f"step-{p.step:07d}")
    if stop_now:
        preempt(r, stop)
    return r.stopped_early or r.preempted or p.step >= r.total_steps


def give_up_nonfinite(r: Run) -> None:
    """Too many non-finite losses in a row: status 1, a message in the log and on stderr."""
    p = r.progress
    r.log.info(f"step {p.step}: {p.nonfinite_in_row} non-finite losses in a row; "
               "stopping. Lower --lr, use --amp bf16 instead of fp16, or "
               "--grad-clip; the last good checkpoint is checkpoints/last.pt")
    print(f"training stopped: {p.nonfinite_in_row} non-finite losses in a row "
          f"at step {p.step} (see {r.config.experiment_dir / 'train.log'})", file=sys.stderr)
    r.status = 1


def preempt(r: Run, stop: StopRequest) -> None:
    """A stop was requested (signal or stop file): save unless saved at this step, stop."""
    r.preempted = True
    if r.saved_at != r.progress.step:
        save(r)
    r.log.info(f"stop requested ({stop.reason()}): checkpoint at step {r.progress.step} "
               f"saved; resume with the same command (--resume auto)")
    if r.world.is_main:
        stop.clear_file()


# --- validation, checkpoints, logging -----------------------------------------------------

def validation(r: Run) -> Dict[str, float]:
    """Validate, log val/*, update best and patience, save last.pt (+ best.pt)."""
    p = r.progress
    metrics = validate(r.model, r.data.validation(), r.config, r.world)
    r.log.scalars({f"val/{k}": v for k, v in metrics.items()}, p.step)
    improved = metrics["der"] < p.best_der - 1e-9
    if improved:
        p.best_der, p.best_step, p.bad_validations = metrics["der"], p.step, 0
    else:
        p.bad_validations += 1
    r.log.info(f"validation step {p.step}: DER {100 * metrics['der']:.2f}% (FA "
               f"{100 * metrics['false_alarm']:.2f} miss {100 * metrics['missed']:.2f} conf "
               f"{100 * metrics['confusion']:.2f}) loss {metrics['loss']:.4f}  best "
               f"{100 * p.best_der:.2f}% @ {p.best_step}")
    r.val = metrics
    save(r, *(["best"] if improved else []))
    return metrics


def save(r: Run, *names: str) -> None:
    """Save last.pt (and {name}.pt: best.pt, step-N.pt) on rank 0; every rank must call it
    (the random states of all ranks are gathered)."""
    rngs = gather_objects(rng_state(), r.world)
    r.saved_at = r.progress.step
    if not r.world.is_main:
        return
    config = r.config.to_dict()
    config["hf_token"] = None
    state = {"format": FORMAT, "model_state": r.model.state_dict(),
             "model_hparams": r.model.hparams, "optimizer_state": r.optimizer.state_dict(),
             "scheduler_state": r.scheduler.state_dict(), "scaler_state": r.scaler.state_dict(),
             **r.progress.as_dict(), "rng": rngs, "world_size": r.world.world_size,
             "config": config, "code_version": r.version, "metrics": dict(r.val)}
    ckpt_dir = r.config.experiment_dir / "checkpoints"
    save_checkpoint(state, [ckpt_dir / "last.pt"] + [ckpt_dir / f"{name}.pt" for name in names])
    prune_step_checkpoints(ckpt_dir, r.config.keep_checkpoints)


def log_progress(r: Run) -> None:
    """train/*, perf/*, memory/* scalars and one progress line from the window's sums
    (reduced across ranks); then a new window starts."""
    world, config, p = r.world, r.config, r.progress
    elapsed = time.perf_counter() - r.window_start
    sums = reduce_sums(r.window.values, world)
    steps = max(1.0, r.window.values.get("steps", 1.0))
    scalars: Dict[str, float] = {}
    if sums.get("losses"):
        scalars["train/loss"] = sums["loss"] / sums["losses"]
    if sums.get("norms"):
        scalars["train/grad_norm"] = sums["grad_norm"] / sums["norms"]
    for i, group in enumerate(r.optimizer.param_groups):
        scalars[f"train/lr/{group.get('name', i)}"] = group["lr"]
    if config.amp == "fp16":
        scalars["train/grad_scale"] = float(r.scaler.get_scale())
    chunks_per_step = config.batch_size * world.world_size
    scalars["perf/chunks_per_s"] = steps * chunks_per_step / max(elapsed, 1e-9)
    scalars["perf/data_wait_fraction"] = sums.get("wait_s", 0.0) / max(
        elapsed * world.world_size, 1e-9)
    if sums.get("nonfinite"):
        scalars["train/nonfinite_steps"] = sums["nonfinite"] / world.world_size
    if world.device.type == "cuda":
        scalars["memory/max_allocated_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
    r.log.scalars(scalars, p.step)
    eta_s = (r.total_steps - p.step) * elapsed / steps
    der = f"{100 * r.val['der']:.2f}%" if "der" in r.val else "-"
    r.log.info(f"step {p.step}/{r.total_steps} epoch {p.epoch} loss "
               f"{scalars.get('train/loss', float('nan')):.4f} DER {der} "
               f"{scalars['perf/chunks_per_s']:.1f} chunks/s ETA {format_duration(eta_s)}")
    r.window, r.window_start = Sums(), time.perf_counter()


# --- the end ------------------------------------------------------------------------------

def finish(r: Run) -> Dict[str, Any]:
    """Save last.pt if the newest step is unsaved, write hparams, close the log; the result."""
    p = r.progress
    if r.status == 0 and r.saved_at != p.step:
        save(r)
    if r.status == 0 and not r.preempted:
        r.log.hparams(hparams_of(r.config),
                      {"hparams/best_der": p.best_der if p.best_der < math.inf else float("nan"),
                       "hparams/final_step": float(p.step)}, p.step)
    r.log.info(f"done at step {p.step} (epoch {p.epoch}): best DER "
               f"{100 * p.best_der:.2f}% at step {p.best_step}" if p.best_der < math.inf
               else f"done at step {p.step} (epoch {p.epoch})")
    r.log.close()
    ckpt_dir = r.config.experiment_dir / "checkpoints"
    best_path = ckpt_dir / "best.pt"
    return {"status": r.status, "step": p.step, "epoch": p.epoch, "best_der": p.best_der,
            "best_step": p.best_step, "val": r.val, "preempted": r.preempted,
            "stopped_early": r.stopped_early, "experiment_dir": str(r.config.experiment_dir),
            "last_checkpoint": str(ckpt_dir / "last.pt"),
            "best_checkpoint": str(best_path) if best_path.exists() else None}
