"""The experiment folder {cdir}/{project}/{name}: one run per folder, one process at a time,
nothing of a run lost or mixed with another.

    check_inputs(config, protocol_data)   before anything is created: the files the flags
                                          name exist, --device cuda has a GPU
    with claim(config.experiment_dir, world) as folder:
        rank 0 holds {experiment}/train.lock (fcntl.flock: the kernel releases it when the
        process ends, however it ends) and deletes the *.tmp-PID files that a kill during a
        checkpoint write left; a folder this run created goes again if the run is refused
        before it starts training (until `folder.started` is set)
    resume_path(config, world)            the checkpoint to continue (None: a new run); a new
                                          run never starts over another one's checkpoints
    check_settings(path, saved, config)   the model and data settings must equal the
                                          checkpoint's; returns the others that changed
                                          (the loop applies them from the resumed step on)

Every refusal is a `RunRefused` (a ValueError), one line that names the folder or file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch

from core.constants import bf16_supported
from train.checkpoint import CheckpointError, find_resume, remove_partial_files, step_checkpoints
from train.config import Config
from train.distributed import World, broadcast_object

try:
    import fcntl
except ImportError:  # not POSIX: no lock (SLURM clusters are Linux)
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "train.lock"

# Settings a resumed run may change; they are applied from the resumed step on. Every other
# setting changes the model or the data and must equal the checkpoint's (so must any setting
# added later, until it is listed here).
MAY_CHANGE = ("epochs", "max_steps", "lr", "lr_pretrained", "weight_decay", "scheduler",
              "warmup_steps", "grad_clip", "amp", "workers", "device", "val_every",
              "val_at_start", "patience", "checkpoint_every", "keep_checkpoints",
              "exact_resume", "log_every", "max_nonfinite", "groundtruths", "collar",
              "skip_overlap")
# Not compared: where the folder is, how this run was started, what --freeze already holds.
NOT_COMPARED = ("resume", "hf_token", "cdir", "project", "name", "freeze_lstm")
FINETUNE_ONLY = ("checkpoint", "revision")  # compared only when either run fine-tunes


class RunRefused(ValueError):
    """This run cannot start as asked; the message says why and what to do."""


def check_inputs(config: Config, protocol_data: bool = True) -> None:
    """Raise RunRefused for inputs that are missing, before anything is created.

    protocol_data: the run reads a pyannote.database protocol (not a test's own data)."""
    if protocol_data and not config.protocol:
        raise RunRefused("--protocol is required (e.g. Synthetic.SpeakerDiarization.AV); "
                         "see `python run.py synth` for a small database to try")
    if protocol_data and config.database and not Path(config.database).is_file():
        raise RunRefused(f"--database {config.database}: no such file")
    if protocol_data and config.video_dir and not Path(config.video_dir).is_dir():
        raise RunRefused(f"--video-dir {config.video_dir}: no such folder")
    if config.resume not in ("auto", "never") and not Path(config.resume).is_file():
        raise RunRefused(f"--resume {config.resume}: no such file (auto, never or a "
                         "checkpoint file)")
    if config.device == "cuda" and not torch.cuda.is_available():
        raise RunRefused("--device cuda: torch sees no CUDA device here; use --device cpu "
                         "or --device auto")
    on_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if on_cuda else "cpu")
    if config.amp == "bf16" and not bf16_supported(device):
        raise RunRefused(f"--amp bf16: this {device.type.upper()} has no bf16 kernels for the "
                         "LSTM; use --amp off (float32)")


class Folder:
    """The experiment folder as this run holds it (rank 0: the lock; every rank: started)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.created: List[Path] = []    # folders this run made, outermost first
        self.removed_partial: List[Path] = []
        self.started = False             # training began: the folder is never discarded
        self._fd: Optional[int] = None

    def lock(self) -> None:
        """Create the folder if needed and take its lock, or raise RunRefused."""
        missing, path = [], self.directory
        while not path.exists():
            missing.append(path)
            path = path.parent
        self.directory.mkdir(parents=True, exist_ok=True)
        self.created = missing[::-1]
        if fcntl is not None:
            lock_path = self.directory / LOCK_NAME
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise RunRefused(
                    f"{self.directory} is in use by another training ({holder}, holding "
                    f"{LOCK_NAME}); wait for it to end, or give a fresh --name") from None
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
            self._fd = fd
        self.removed_partial = remove_partial_files(self.directory / "checkpoints")

    def unlock(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def discard(self) -> None:
        """Remove the folders this run created (nothing else was ever in them)."""
        if self.created:
            shutil.rmtree(self.created[-1], ignore_errors=True)
            for path in reversed(self.created[:-1]):
                with contextlib.suppress(OSError):
                    path.rmdir()  # only when empty: another run may have filled it meanwhile


@contextlib.contextmanager
def claim(directory: Path, world: World) -> Iterator[Folder]:
    """Hold the experiment folder for this run (see the module docstring)."""
    folder = Folder(directory)
    refusal = None
    if world.is_main:
        try:
            folder.lock()
        except RunRefused as error:
            refusal = str(error)
    refusal = broadcast_object(refusal, world)
    if refusal:
        raise RunRefused(refusal)
    try:
        yield folder
    except BaseException:
        if world.is_main and not folder.started:
            folder.unlock()
            folder.discard()
        raise
    finally:
        folder.unlock()


def resume_path(config: Config, world: World) -> Optional[str]:
    """The checkpoint this run continues, or None; rank 0 decides for every rank.

    A folder holding checkpoints holds a run: it can only be continued from its newest
    checkpoint (--resume auto, or --resume naming that file); --resume never or another
    checkpoint there would overwrite it, so the run is refused."""
    answer: Tuple[str, Optional[str]] = ("ok", None)
    if world.is_main:
        try:
            answer = ("ok", _choose_resume(config))
        except (RunRefused, CheckpointError, FileNotFoundError) as error:
            answer = ("refused", str(error))
    kind, value = broadcast_object(answer, world)
    if kind == "refused":
        raise RunRefused(value)
    return value


def _choose_resume(config: Config) -> Optional[str]:
    exp = config.experiment_dir
    ckpt_dir = exp / "checkpoints"
    held = [ckpt_dir / n for n in ("last.pt", "best.pt") if (ckpt_dir / n).is_file()]
    held += step_checkpoints(ckpt_dir)
    newest = find_resume(ckpt_dir) if held else None
    if held and newest is None:
        if config.resume == "auto":
            raise RunRefused(
                f"{ckpt_dir} holds {', '.join(p.name for p in held)} but neither last.pt nor a "
                "step-N.pt loads; resume one with --resume PATH and a fresh --name")
    if config.resume == "auto":
        return str(newest) if newest else None
    what = f"{(newest or held[0]).name} at step {_step(newest or held[0])}" if held else ""
    if config.resume == "never":
        if held:
            raise RunRefused(
                f"{exp} already holds a run ({what}); --resume never would overwrite it: "
                "continue it with --resume auto, or start a new run with a fresh --name")
        return None
    path = Path(config.resume)
    if held and not (newest and path.resolve().parent == ckpt_dir.resolve()
                     and _step(path) == _step(newest)):
        raise RunRefused(
            f"{exp} holds another run ({what}); resuming {path} there would overwrite it: "
            "give a fresh --name to resume it, or continue this run with --resume auto")
    return str(path)


def _step(path: Optional[Path]) -> Any:
    """The step a checkpoint was saved at ('?' when it does not load)."""
    if path is None:
        return "?"
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["step"])
    except Exception:
        return "?"


def check_settings(path: str, saved: Dict[str, Any], config: Config) -> Dict[str, Tuple]:
    """{setting: (checkpoint's, now)} for the settings that may change and did; raises
    RunRefused listing every model or data setting that differs from the checkpoint's."""
    now = config.to_dict()
    finetune = bool(saved.get("finetune")) or config.finetune
    mismatched, changed = {}, {}
    for key, value in now.items():
        if key not in saved or key in NOT_COMPARED or (key in FINETUNE_ONLY and not finetune):
            continue
        before = saved[key]
        if key == "freeze":
            before, value = sorted(before or []), sorted(value or [])
        if before != value:
            (changed if key in MAY_CHANGE else mismatched)[key] = (before, value)
    if mismatched:
        raise RunRefused(
            f"{path} was trained with other model or data settings (checkpoint -> now): "
            + ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in sorted(mismatched.items()))
            + "; give the same flags to continue it, or a fresh --name for a new run")
    return changed

