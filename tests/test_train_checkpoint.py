"""Atomic checkpoints, kill -9 during a write, newest-checkpoint search, RNG round trip."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

from train.checkpoint import (
    find_resume,
    load_checkpoint,
    prune_step_checkpoints,
    rng_state,
    save_checkpoint,
    set_rng_state,
    step_checkpoints,
)

ROOT = Path(__file__).resolve().parent.parent


def state(step, size=10):
    return {"model_state": {"w": torch.full((size,), float(step))}, "step": step,
            "config": {"name": "x"}, "rng": [rng_state()]}


def test_save_writes_every_path_and_loads_with_weights_only(tmp_path):
    paths = [tmp_path / "c" / "last.pt", tmp_path / "c" / "best.pt"]
    save_checkpoint(state(3), paths)
    for path in paths:
        loaded = torch.load(path, weights_only=True)
        assert loaded["step"] == 3
        assert torch.equal(loaded["model_state"]["w"], torch.full((10,), 3.0))
    assert not list((tmp_path / "c").glob("*.tmp-*"))


def test_find_resume_takes_the_newest_loadable_and_ignores_partial_files(tmp_path):
    assert find_resume(tmp_path) is None
    save_checkpoint(state(5), [tmp_path / "step-0000005.pt"])
    save_checkpoint(state(9), [tmp_path / "step-0000009.pt"])
    (tmp_path / "last.pt").write_bytes(b"garbage, as if truncated")
    (tmp_path / "step-0000012.pt.tmp-123").write_bytes(b"half a checkpoint")
    assert find_resume(tmp_path) == tmp_path / "step-0000009.pt"
    save_checkpoint(state(11), [tmp_path / "last.pt"])
    assert find_resume(tmp_path) == tmp_path / "last.pt"
    prune_step_checkpoints(tmp_path, keep=1)
    assert [p.name for p in step_checkpoints(tmp_path)] == ["step-0000009.pt"]


def test_load_checkpoint_names_the_file_when_wrong(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"hello": 1}, bad)
    for path, words in ((bad, "not an avdiar"), (tmp_path / "none.pt", "does not exist")):
        try:
            load_checkpoint(path)
        except (RuntimeError, FileNotFoundError) as error:
            assert words in str(error) and str(path) in str(error)
        else:
            raise AssertionError("no error")


def test_rng_state_round_trip():
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    saved = torch.load(_roundtrip(rng_state()), weights_only=True)
    first = (random.random(), np.random.rand(), torch.rand(3))
    set_rng_state(saved)
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == again[0] and first[1] == again[1] and torch.equal(first[2], again[2])


def _roundtrip(obj):
    import io
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer


def test_kill_9_during_checkpoint_writes_leaves_last_pt_loadable(tmp_path):
    """A writer saving ~20 MB checkpoints in a loop is killed -9 at two moments."""
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(ROOT)!r})
        from train.checkpoint import save_checkpoint
        step = 0
        while True:
            step += 1
            save_checkpoint({{"model_state": {{"w": torch.full((5_000_000,), float(step))}},
                              "step": step}}, [{str(tmp_path / "last.pt")!r}])
            print(step, flush=True)
    """)
    for delay in (0.05, 0.3):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "1"  # the first write is complete
            time.sleep(delay)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        loaded = load_checkpoint(tmp_path / "last.pt")
        step = loaded["step"]
        assert torch.equal(loaded["model_state"]["w"][-5:], torch.full((5,), float(step)))
        assert find_resume(tmp_path) == tmp_path / "last.pt"
