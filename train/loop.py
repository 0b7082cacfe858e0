"""The training loop, top to bottom: `train(config) -> dict`.

    check    flags and the files they name, before anything is created (train/config.py,
             train/experiment.py)
    world    torchrun's environment (train/distributed.py); world size 1 without torchrun
    folder   the experiment folder's lock: one training at a time (train/experiment.py)
    resume   --resume auto: the newest complete checkpoint of the experiment, if any; its
             model and data settings must be this run's, the others are applied
    start    log and config.json; model built, or loaded from --checkpoint (--finetune), parts
             frozen, DDP-wrapped; optimizer, schedule, scaler; a checkpoint's state restored
    epochs   rank-local map-style batches: batch k of epoch e is the same after a restart
    step     autocast forward -> float32 permutation-invariant loss -> (scaled) backward ->
             unscale, clip -> step; every rank agrees on skip/stop at each step
    after    log_every: train/* scalars and a progress line; val_every (or each epoch):
             local DER on the fixed development chunks, best.pt, early stopping;
             checkpoint_every: step-N.pt. SIGUSR1/SIGTERM/stop file: save, exit 0.
    finish   last.pt, TensorBoard hparams, the result dict

Every step is one function of `Run` (train/state.py), the run's state: what it trains
(model, data, optimizer, schedule, scaler) and where it stands (`Progress`, the counters a
checkpoint holds: train/checkpoint.py).
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from typing import Any, Callable, Dict, Optional

import torch
from torch.nn.parallel import DistributedDataParallel

from core.parts import freeze, summary
from train import data_adapter
from train.checkpoint import (
    FORMAT,
    CheckpointError,
    code_version,
    load_checkpoint,
    prune_step_checkpoints,
    reseed_cudnn_dropout,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from train.config import Config
from train.distributed import World, any_rank, distributed, gather_objects, reduce_sums
from train.experiment import Folder, check_inputs, check_settings, claim, resume_path
from train.logging import NullLog, config_text, format_duration, hparams_of, make_log
from train.loss import segmentation_loss
from train.metrics import Sums
from train.model import make_model, seed_all
from train.optim import build_optimizer, build_scheduler, load_state
from train.preemption import StopRequest
from train.state import Progress, Run
from train.validate import forward, nonfinite_cause, to_device, validate

__all__ = ["train", "make_model", "seed_all", "validate", "Progress", "Run"]

DataFactory = Callable[[Config, torch.nn.Module, World], data_adapter.Data]


def train(config: Config, data_factory: Optional[DataFactory] = None) -> Dict[str, Any]:
    """Train as `config` says; returns final metrics, counters and checkpoint paths.

    data_factory(config, model, world) -> Data replaces the protocol's data (data/), e.g.
    with train.toydata.ToyData in tests and benchmarks.

    Keys: status (0 ok, 1 failed), step, epoch, best_der, best_step, val (last validation
    metrics), preempted, stopped_early, experiment_dir, last_checkpoint, best_checkpoint.
    Refusals (bad flags or files, a folder in use or holding another run, a checkpoint that
    is corrupt or does not fit) raise ValueError, FileNotFoundError or CheckpointError
    with a one-line message; a folder this run created is then removed again.
    """
    check_inputs(config, protocol_data=data_factory is None)
    # signals are remembered from the start (index building can take minutes)
    with distributed(config.device) as world, claim(config.experiment_dir, world) as folder, \
            StopRequest(config.experiment_dir / "STOP") as stop:
        return run(config, world, data_factory or data_adapter.build, stop, folder)


def run(config: Config, world: World, data_factory: DataFactory, stop: StopRequest,
        folder: Folder) -> Dict[str, Any]:
    """The whole run in `world`: resume point, start, epochs until done, finish."""
    path = resume_path(config, world)
    state = load_checkpoint(path) if path else None
    changed = check_settings(path, state.get("config") or {}, config) if state else {}
    log = open_log(config, world, path, state, changed, folder)
    try:
        r = start(config, world, data_factory, log, path, state)
        folder.started = True
        if state is None and config.val_at_start:
            validation(r)
        r.window_start = time.perf_counter()  # chunks/s counts training only
        while not r.finished:
            train_epoch(r, stop)
        return finish(r)
    except BaseException:
        log.close()  # the log's writer thread must not outlive the run (or its folder)
        raise


# --- start --------------------------------------------------------------------------------

def open_log(config: Config, world: World, resume_path: Optional[str],
             state: Optional[Dict[str, Any]], changed: Dict[str, Any], folder: Folder) -> NullLog:
    """train.log and TensorBoard (rank 0), config.json, and what the run starts from."""
    step = int(state["step"]) if state else 0
    log = make_log(world.is_main, config.experiment_dir, purge_step=step + 1 if state else None)
    if world.is_main:
        config.save()
    log.info(f"experiment {config.experiment_dir}  world size {world.world_size}  "
             f"device {world.device}  code {code_version()}")
    if folder.removed_partial:
        log.info("removed what an interrupted checkpoint write left: "
                 + ", ".join(p.name for p in folder.removed_partial))
    if state:
        log.info(f"resuming from {resume_path} at step {step}")
    if changed:
        log.info("settings changed since the checkpoint, applied from here on "
                 "(checkpoint -> now): " + ", ".join(
                     f"{k}: {a} -> {b}" for k, (a, b) in sorted(changed.items())))
    log.text("config", "```\n" + config_text(config) + "\n```", 0)
    return log


def start(config: Config, world: World, data_factory: DataFactory, log: NullLog,
          resume_path: Optional[str], state: Optional[Dict[str, Any]]) -> Run:
    """Build model, data, optimizer, schedule and scaler; restore `state`."""
    progress = Progress.from_checkpoint(state) if state else Progress()

    seed_all(config.seed)  # the same initialisation on every rank
    model = make_model(config, state["model_hparams"] if state else None)
    if state:
        try:
            model.load_state_dict(state["model_state"])
        except RuntimeError as error:
            raise CheckpointError(f"{resume_path}: its weights do not fit the model its "
                                  f"hparams describe ({str(error).splitlines()[0]})") from None
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
        load_state(optimizer, scheduler, state["optimizer_state"], state["scheduler_state"])
        if state["scaler_state"]:  # empty when the checkpoint's run had no fp16 scaler
            scaler.load_state_dict(state["scaler_state"])
    ddp = model
    if world.is_distributed:
        ddp = DistributedDataParallel(
            model, device_ids=[world.local_rank] if world.device.type == "cuda" else None)
    restore_random_streams(config, world, log, state, progress.step)
    return Run(config, world, log, model, ddp, data, optimizer, scheduler, scaler, total_steps,
               code_version(), progress, saved_at=progress.step)


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
    local_nonfinite = not bool(torch.isfinite(loss))
    nonfinite, stop_now = any_rank([local_nonfinite, stop.local()], r.world)
    r.optimizer.zero_grad(set_to_none=True)
    if nonfinite:
        p.nonfinite_in_row += 1
        r.window.add(nonfinite=1)
        r.nonfinite_cause = (nonfinite_cause(r.model, batch) if local_nonfinite
                             else "the loss of another rank")
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
    return r.finished


def give_up_nonfinite(r: Run) -> None:
    """Too many non-finite losses in a row: status 1, the cause in the log and on stderr."""
    p = r.progress
    stop_training(r, f"{p.nonfinite_in_row} non-finite losses in a row at step {p.step} "
                     f"(those steps changed nothing): {r.nonfinite_cause}")


def stop_training(r: Run, why: str) -> None:
    """Fail the run (status 1) with `why` and advice fitting it, in the log and on stderr."""
    advice = ""
    if "diverged" in why or "overflowed" in why:
        advice = f"; lower --lr (now {r.config.lr:g})" + (
            ", or set --grad-clip" if not r.config.grad_clip else "") + (
            ", or use --amp bf16 instead of fp16" if r.config.amp == "fp16" else "")
    last = r.config.experiment_dir / "checkpoints" / "last.pt"
    kept = f"; the last checkpoint written, {last}, holds finite weights" if last.exists() else ""
    r.log.info(f"training stopped: {why}{advice}{kept}")
    print(f"training stopped: {why}{advice} (see {r.config.experiment_dir / 'train.log'})",
          file=sys.stderr)
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
    (the random states of all ranks are gathered). Non-finite weights are never saved: the
    run stops instead (status 1)."""
    if not bool(torch.stack([torch.isfinite(w).all() for w in r.model.parameters()]).all()):
        if not r.status:
            stop_training(r, f"{nonfinite_cause(r.model, {})} at step {r.progress.step}; "
                             "not saved")
        return
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
