"""core/speed.py: the one switch for the speed paths, and results that do not depend on the
number of threads."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core import speed

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("value,expected", [
    (None, speed.DEFAULT), ("", speed.DEFAULT), ("0", False), ("off", False), (" No ", False),
    ("1", True), ("ON", True), ("true", True)])
def test_environment_values(value, expected):
    assert speed.parse(value) is expected


def test_an_unknown_value_is_a_clear_error():
    with pytest.raises(ValueError, match="AVDIAR_SPEED_PATHS='fast'.*expected one of"):
        speed.parse("fast")


def test_the_context_sets_and_restores_the_switch():
    before = speed.enabled()
    with speed.speed_paths(not before):
        assert speed.enabled() is (not before)
        with speed.speed_paths(before):
            assert speed.enabled() is before
        assert speed.enabled() is (not before)
    assert speed.enabled() is before


def _run(code: str, **env: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_environment_variable_is_read_at_import():
    code = "from core import speed; print(speed.enabled())"
    assert _run(code, AVDIAR_SPEED_PATHS="0") == "False"
    assert _run(code, AVDIAR_SPEED_PATHS="yes") == "True"


THREADS_SCRIPT = """
import sys, torch
torch.set_num_threads(int(sys.argv[1]))
from core import build_model, speed
from eval.inference import infer_file
speed.set_enabled(sys.argv[2] == "on")
torch.manual_seed(0)
model = build_model("audio", lstm={"hidden_size": 16, "num_layers": 2, "bidirectional": True,
                                   "dropout": 0.5}, linear={"hidden_size": 16, "num_layers": 1},
                    duration_s=2.0)
generator = torch.Generator().manual_seed(1)
waveforms = 0.1 * torch.randn(6, 1, 32000, generator=generator)
waveform = 0.1 * torch.randn(1, 16000 * 7, generator=generator)
with torch.inference_mode():
    eval_scores = model.eval()(waveforms)
file_scores = torch.from_numpy(infer_file(model, waveform, step_ratio=0.1,
                                          batch_size=8).probabilities)
torch.save([eval_scores, file_scores], sys.argv[3])
"""


@pytest.mark.slow
@pytest.mark.parametrize("switch", ["on", "off"])
def test_outputs_do_not_depend_on_the_thread_count(tmp_path, switch):
    """The eval forward and whole-file inference give bitwise the same numbers at 1 and at
    2 threads, with the speed paths on and off. No avdiar code path looks at the thread
    count; in training, PyTorch's own kernels (nn.LSTM with autograd, the weight gradients
    of convolutions and matmuls) round differently at 1 and 2 threads in the last bits
    (seen here: 6e-8 in a small LSTM's outputs), which no switch of ours changes."""
    results = []
    for threads in (1, 2):
        out = tmp_path / f"{threads}.pt"
        _run(THREADS_SCRIPT.replace("sys.argv[1]", repr(str(threads)))
             .replace("sys.argv[2]", repr(switch)).replace("sys.argv[3]", repr(str(out))))
        results.append(torch.load(out))
    for one, two in zip(*results):
        assert torch.equal(one, two)
