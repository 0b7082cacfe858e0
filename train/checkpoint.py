"""Checkpoints that survive a kill at any moment, and everything exact resume needs.

Files: {experiment}/checkpoints/last.pt (newest), best.pt (best validation DER) and
step-XXXXXXX.pt (every N steps). Each is one dict of tensors and plain types, so
`torch.load(path, weights_only=True)` reads it and `core.load_pretrained` accepts it:

    model_state, model_hparams, optimizer_state, scheduler_state, scaler_state,
    step, epoch, batch_in_epoch, best_der, best_step, bad_validations, nonfinite_in_row,
    rng (one entry per rank: python, numpy, torch, cuda), world_size, config, code_version,
    metrics, format.

Writing: serialise once to memory, write `name.tmp-PID`, flush, fsync, os.replace onto the
final name, fsync the folder. A reader therefore sees the old file or the new one, never half;
a kill during the write leaves a `*.tmp-PID` file, which `remove_partial_files` deletes.
"""

from __future__ import annotations

import io
import os
import random
import re
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

FORMAT = "avdiar-train-1"
STEP_FILE = re.compile(r"^step-(\d+)\.pt$")
PARTIAL_FILE = re.compile(r"\.tmp-\d+$")
UNSAFE_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (corrupt, unsafe, not ours, or not fitting); the
    message is one line that names the file."""


def write_atomic(data: bytes, path: Path) -> None:
    """Write bytes to `path` so that a crash leaves either the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def save_checkpoint(state: Dict[str, Any], paths: List[Path]) -> None:
    """Serialise `state` once and write it atomically to every path (last, best, step-N)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    for path in paths:
        write_atomic(data, path)


def load_checkpoint(path: Path, map_location: Any = "cpu") -> Dict[str, Any]:
    """Read one of our checkpoints (weights_only: no code from the file runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise CheckpointError(f"checkpoint {path} cannot be read: {read_failure(error)}") from error
    if not isinstance(state, dict) or "model_state" not in state or "step" not in state:
        raise CheckpointError(
            f"{path} is not an avdiar training checkpoint (no model_state/step); to start "
            f"from its weights, use --finetune --checkpoint {path}")
    return state


def read_failure(error: Exception) -> str:
    """Why torch.load(weights_only=True) failed, in a few words."""
    unsafe = UNSAFE_GLOBAL.search(str(error))
    if unsafe:
        return (f"it names {unsafe.group(1)}, which could run code when loaded "
                "(refused; only tensors and plain types are read)")
    return "truncated, corrupt, or not a torch checkpoint"


def remove_partial_files(directory: Path) -> List[Path]:
    """Delete the `*.tmp-PID` files an interrupted write left in `directory`; returns them.
    Only call it while holding the experiment's lock (no write can be under way)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    partial = sorted(p for p in directory.iterdir() if PARTIAL_FILE.search(p.name))
    for path in partial:
        path.unlink(missing_ok=True)
    return partial


def step_checkpoints(directory: Path) -> List[Path]:
    """step-XXXXXXX.pt files in `directory`, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir()
             if (m := STEP_FILE.match(p.name))]
    return [p for _, p in sorted(found)]


def find_resume(directory: Path) -> Optional[Path]:
    """The newest complete checkpoint in `directory`: last.pt, or the newest step-N.pt that loads.

    Temporary files (`*.tmp-PID`) from an interrupted write are never considered.
    """
    directory = Path(directory)
    candidates = []
    for path in [directory / "last.pt"] + step_checkpoints(directory)[::-1]:
        if not path.is_file():
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:
            continue
        candidates.append((int(state.get("step", -1)), path))
    if not candidates:
        return None
    return max(candidates, key=lambda item: item[0])[1]


def prune_step_checkpoints(directory: Path, keep: int) -> None:
    """Delete all but the `keep` newest step-N.pt files (keep <= 0 keeps all)."""
    if keep > 0:
        for path in step_checkpoints(directory)[:-keep]:
            path.unlink(missing_ok=True)


def rng_state() -> Dict[str, Any]:
    """This process's random states (python, numpy, torch CPU, CUDA) as tensors/plain types."""
    version, internal, gauss = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    state = {
        "python": [version, list(internal), gauss],
        "numpy": {
            "bit_generator": numpy_state["bit_generator"],
            "key": torch.from_numpy(np.asarray(numpy_state["state"]["key"], dtype=np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # this rank's current device
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what rng_state() returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state({
        "bit_generator": numpy_state["bit_generator"],
        "state": {"key": numpy_state["key"].numpy().astype(np.uint32),
                  "pos": int(numpy_state["pos"])},
        "has_gauss": int(numpy_state["has_gauss"]),
        "gauss": float(numpy_state["gauss"]),
    })
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())


def reseed_cudnn_dropout(device: torch.device) -> None:
    """Make cuDNN's LSTM dropout follow the CUDA random state, which checkpoints save.

    cuDNN keeps a dropout random state of its own, seeded from the CUDA generator once per
    process, so a resumed run would draw other masks than the run it continues. Setting the
    generator's state (to itself) makes the next cuDNN RNN call in training re-seed it from
    the generator: called before every step, each step's masks follow from the state that
    rng_state() saves. A no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.set_rng_state(torch.cuda.get_rng_state(device), device)


def code_version() -> str:
    """`git describe` of the source tree when it is a git checkout, else the package version."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=root,
                             capture_output=True, text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        from importlib.metadata import version
        return version("avdiar")
    except Exception:
        return "unknown"
