"""Hub ids that core/weights.py knows load offline from the weights cache.

The Hub code runs first (monkeypatched here to fail as it does offline); the fallback serves
only a verified copy, only for a known id given without a revision. The last test runs the
real checkpoints in a fresh interpreter with HF_HUB_OFFLINE=1 and an empty Hugging Face
cache; it skips when `make weights` has not put them in the weights cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import core.hub
import core.weights as weights
from core import load_pretrained
from core.weights import KnownFile

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]
HUB_ID = "someone/fake-segmentation"


@pytest.fixture
def offline_hub(monkeypatch):
    """hf_hub_download fails as it does offline with nothing in its cache."""
    from huggingface_hub.utils import LocalEntryNotFoundError

    asked = []

    def download(repo_id, filename, revision=None, token=None):
        asked.append((repo_id, filename, revision))
        raise LocalEntryNotFoundError("offline and not in the cache")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", download)
    return asked


@pytest.fixture
def known_checkpoint(monkeypatch, tmp_path):
    """powerset_small.bin registered as the known file of HUB_ID; cache under tmp."""
    source = FIXTURES / "powerset_small.bin"
    data = source.read_bytes()
    entry = KnownFile("fake/segmentation", hashlib.sha256(data).hexdigest(), len(data),
                      "avdiar-fake==0.1", "x/pytorch_model.bin",
                      hub=(HUB_ID, "pytorch_model.bin"))
    monkeypatch.setitem(weights.KNOWN, entry.name, entry)
    monkeypatch.setenv("AVDIAR_WEIGHTS", str(tmp_path / "cache"))
    return entry, source


def _install(entry: KnownFile, source: Path) -> Path:
    target = weights.cache_path(entry)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def test_offline_hub_id_loads_from_the_weights_cache(offline_hub, known_checkpoint):
    entry, source = known_checkpoint
    target = _install(entry, source)
    assert core.hub.resolve_checkpoint(HUB_ID) == str(target)
    assert offline_hub[0] == (HUB_ID, "pytorch_model.bin", None)  # the Hub was asked first
    expected = np.load(FIXTURES / "powerset_small.npz")
    with torch.no_grad():
        ours = load_pretrained(HUB_ID)(torch.from_numpy(expected["waveforms"])).numpy()
    assert np.abs(ours - expected["outputs"]).max() <= 1e-4


def test_gated_without_token_also_falls_back(monkeypatch, known_checkpoint):
    entry, source = known_checkpoint
    target = _install(entry, source)

    def gated(*args, **kwargs):
        raise PermissionError(f"{HUB_ID} is gated")

    monkeypatch.setattr(core.hub, "_download", gated)
    assert core.hub.resolve_checkpoint(HUB_ID) == str(target)


def test_a_copy_that_is_not_the_known_file_is_not_used(offline_hub, known_checkpoint):
    entry, source = known_checkpoint
    target = _install(entry, source)
    target.write_bytes(target.read_bytes()[:-10])
    with pytest.raises(ConnectionError, match=f"python run.py weights {entry.name}"):
        core.hub.resolve_checkpoint(HUB_ID)


def test_not_fetched_yet_says_how(offline_hub, known_checkpoint):
    entry, _ = known_checkpoint
    with pytest.raises(ConnectionError, match=f"python run.py weights {entry.name}"):
        load_pretrained(HUB_ID)


def test_a_revision_is_never_served_from_the_cache(offline_hub, known_checkpoint):
    entry, source = known_checkpoint
    _install(entry, source)
    with pytest.raises(ConnectionError) as caught:
        core.hub.resolve_checkpoint(f"{HUB_ID}@v1.0")
    assert "run.py weights" not in str(caught.value)


def test_unknown_hub_id_keeps_the_hub_error(offline_hub, known_checkpoint):
    with pytest.raises(ConnectionError) as caught:
        core.hub.resolve_checkpoint("someone/unknown-model")
    assert "run.py weights" not in str(caught.value)


REAL = ("pyannote/segmentation-3.0", "pyannote/segmentation")


@pytest.mark.slow
@pytest.mark.skipif(any(weights.cached(name) is None for name in REAL),
                    reason="real checkpoints not in the weights cache (run `make weights`)")
def test_real_checkpoints_load_with_hf_hub_offline(tmp_path):
    """The default --checkpoint and the v2 model, in a fresh interpreter with the Hub off."""
    script = (
        "from core import load_pretrained\n"
        "a = load_pretrained('pyannote/segmentation-3.0')\n"
        "b = load_pretrained('pyannote/segmentation')\n"
        "c = load_pretrained('pyannote/segmentation-3.0', model=8, esize=16)\n"
        "print(a.num_classes, a.powerset is not None, b.num_classes, b.powerset is None,"
        " type(c).__name__)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"), "HF_TOKEN": "",
           "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["7", "True", "3", "True", "HybridFusion"]
