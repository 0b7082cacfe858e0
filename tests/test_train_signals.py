"""SIGUSR1 / SIGTERM / stop file: a checkpoint appears and the process exits 0."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from train.preemption import STOP_FILE_ENV, StopRequest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent("""
    import faulthandler
    import sys
    faulthandler.enable()  # a crash (seen once: SIGSEGV after SIGUSR1) prints its stack
    sys.path.insert(0, {root!r})
    import torch
    torch.set_num_threads(1)
    from train.config import Config
    from train.loop import train
    from train.toydata import toy_factory
    config = Config(cdir={cdir!r}, name="run", lstm_hidden=8, lstm_layers=1, lstm_dropout=0.0,
                    linear_hidden=8, batch_size=2, duration=1.0, epochs=1000, log_every=1,
                    workers=0, device="cpu", val_at_start=False, val_every=1000)
    result = train(config, toy_factory(batches_per_epoch=50, val_batches=1))
    print("RESULT", result["step"], result["preempted"], flush=True)
    sys.exit(result["status"])
""")


def start(tmp_path: Path, name: str, env=None) -> subprocess.Popen:
    cdir = tmp_path / name
    full_env = {k: v for k, v in os.environ.items() if k != STOP_FILE_ENV}
    full_env.update(env or {})
    return subprocess.Popen([sys.executable, "-c", SCRIPT.format(root=str(ROOT), cdir=str(cdir))],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=full_env)


def wait_for_steps(tmp_path: Path, name: str, timeout_s: float = 120.0) -> None:
    log = tmp_path / name / "avdiar" / "run" / "train.log"
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if log.exists() and "step 2/" in log.read_text():
            return
        time.sleep(0.2)
    raise AssertionError(f"training in {log.parent} did not reach step 2")


@pytest.mark.slow
def test_sigusr1_and_sigterm_save_a_checkpoint_and_exit_0(tmp_path):
    procs = {"usr1": start(tmp_path, "usr1"), "term": start(tmp_path, "term"),
             "file": start(tmp_path, "file", {STOP_FILE_ENV: str(tmp_path / "PREEMPT")})}
    try:
        for name, proc in procs.items():
            wait_for_steps(tmp_path, name)
            if name == "file":
                (tmp_path / "PREEMPT").touch()
            else:
                proc.send_signal(signal.SIGUSR1 if name == "usr1" else signal.SIGTERM)
        outputs = {name: proc.communicate(timeout=120)[0] for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    for name, proc in procs.items():
        assert proc.returncode == 0, outputs[name]
        exp = tmp_path / name / "avdiar" / "run"
        saved = torch.load(exp / "checkpoints" / "last.pt", weights_only=True)
        assert f"RESULT {saved['step']} True" in outputs[name]
        assert saved["step"] >= 2
        reason = {"usr1": "SIGUSR1", "term": "SIGTERM", "file": "stop file"}[name]
        assert f"stop requested ({reason}" in (exp / "train.log").read_text()
    assert not (tmp_path / "PREEMPT").exists()  # cleared for the requeued job


def test_stop_request_flag_file_and_handlers(tmp_path, monkeypatch):
    monkeypatch.setenv(STOP_FILE_ENV, str(tmp_path / "stop-here"))
    previous = signal.getsignal(signal.SIGUSR1)
    with StopRequest(tmp_path / "ignored") as stop:
        assert stop.stop_file == tmp_path / "stop-here" and not stop.local()
        (tmp_path / "stop-here").touch()
        assert stop.local() and "stop file" in stop.reason()
        stop.clear_file()
        assert not stop.local()
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.05)
        assert stop.local() and stop.reason() == "SIGUSR1"
    assert signal.getsignal(signal.SIGUSR1) == previous
