"""Our PyanNet with the real weights against pyannote.audio 4.0.7 on real speech.

tests/fixtures/pyannote_real_speech.npz holds pyannote's own outputs of the real
pyannote/segmentation-3.0 and pyannote/segmentation (2.x) on windows of pyannote's
sample.wav (see tests/fixtures/make_pyannote_real_reference.py). The checkpoints and the
audio come from the weights cache; the tests skip when `make weights` has not run.

Tolerance: 2e-4 absolute on segmentation-3.0's log-probabilities (which reach -33) and on
the 2.x model's probabilities, float32 on the CPU; measured 8.2e-5 and 7.6e-5. The whole
difference comes from SincNet folding the waveform norm's affine into the sinc filters
(first convolution within 5.5e-6 of pyannote's; bitwise equal unfolded), which the
instance norms downstream amplify; the LSTM and everything after it are bitwise equal on
equal inputs. The decisions (most likely class, or probability > 0.5) are identical.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from core import load_pretrained
from core.weights import cached

FIXTURE = Path(__file__).parent / "fixtures" / "pyannote_real_speech.npz"
TOLERANCE = 2e-4
NAMES = {"seg3": ("pyannote/segmentation-3.0", 160000), "v2": ("pyannote/segmentation", 80000)}


def _real(name: str) -> str:
    path = cached(name)
    if path is None:
        pytest.skip(f"{name} not in the weights cache (run `make weights`)")
    return str(path)


def _windows(prefix: str) -> torch.Tensor:
    """(windows, 1, samples) cut from sample.wav where pyannote's reference cut them."""
    samples, rate = sf.read(_real("pyannote/sample.wav"), dtype="float32")
    assert rate == 16000
    length = NAMES[prefix][1]
    starts = np.load(FIXTURE)[f"{prefix}_starts"]
    return torch.from_numpy(np.stack([samples[s:s + length] for s in starts])[:, None])


@pytest.mark.parametrize("prefix", ["seg3", "v2"])
def test_real_model_equals_pyannote_on_real_speech(prefix):
    model = load_pretrained(_real(NAMES[prefix][0]))
    windows = _windows(prefix)
    expected = np.load(FIXTURE)[f"{prefix}_outputs"]
    with torch.no_grad():
        ours = model(windows).numpy()
    assert ours.shape == expected.shape
    difference = np.abs(ours - expected).max()
    assert difference <= TOLERANCE, f"{prefix}: max |ours - pyannote| = {difference}"
    if prefix == "seg3":  # the windows hold speech: mostly someone, sometimes two at once
        decisions, theirs = ours.argmax(-1), expected.argmax(-1)
        assert (theirs != 0).mean() > 0.5 and (theirs >= 4).any()
    else:
        decisions, theirs = ours > 0.5, expected > 0.5
        assert theirs.any(axis=-1).mean() > 0.5 and (theirs.sum(-1) >= 2).any()
    assert np.array_equal(decisions, theirs)


@pytest.mark.parametrize("model_id", [6, 7, 8])
def test_fusion_models_start_as_real_segmentation_3(model_id):
    """Step 0 of every fusion model built from the real weights is pyannote's output on real
    speech, whatever the video (random values, some frames missing)."""
    model = load_pretrained(_real("pyannote/segmentation-3.0"), model=model_id, esize=384)
    windows = _windows("seg3")
    expected = np.load(FIXTURE)["seg3_outputs"]
    generator = torch.Generator().manual_seed(model_id)
    video = torch.randn(len(windows), 250, 384, generator=generator)
    mask = torch.rand(len(windows), 250, generator=generator) > 0.3
    with torch.no_grad():
        ours = model(windows, video=video, video_mask=mask).numpy()
    difference = np.abs(ours - expected).max()
    assert difference <= TOLERANCE, f"model {model_id}: max |ours - pyannote| = {difference}"
