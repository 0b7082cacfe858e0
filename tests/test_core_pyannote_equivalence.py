"""Our PyanNet against pyannote.audio 4.0.7 itself.

tests/fixtures/*.bin were written by pyannote.audio and Lightning (see
tests/fixtures/make_pyannote_reference.py), the .npz files hold pyannote's outputs on fixed
inputs. load_pretrained must read the checkpoints and compute the same outputs.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from core import load_pretrained, receptive_field

FIXTURES = Path(__file__).parent / "fixtures"
CASES = [("powerset_small.bin", "powerset_small.npz"),
         ("multilabel_small.bin", "multilabel_small.npz"),
         ("legacy_multilabel.bin", "multilabel_small.npz")]
TOLERANCE = 1e-4


@pytest.mark.parametrize("checkpoint,reference", CASES)
def test_outputs_match_pyannote(checkpoint, reference):
    model = load_pretrained(str(FIXTURES / checkpoint))
    expected = np.load(FIXTURES / reference)
    with torch.no_grad():
        for inputs, outputs in (("waveforms", "outputs"), ("waveforms_odd", "outputs_odd")):
            ours = model(torch.from_numpy(expected[inputs])).numpy()
            assert ours.shape == expected[outputs].shape
            difference = np.abs(ours - expected[outputs]).max()
            assert difference <= TOLERANCE, f"{checkpoint} {inputs}: max |diff| {difference}"


def test_specifications_are_read():
    powerset = load_pretrained(str(FIXTURES / "powerset_small.bin"))
    assert powerset.powerset is not None and powerset.num_classes == 7
    assert powerset.duration_s == 10.0
    multilabel = load_pretrained(str(FIXTURES / "multilabel_small.bin"))
    assert multilabel.powerset is None and multilabel.num_classes == 4
    assert multilabel.duration_s == 5.0
    assert multilabel.lstm.num_layers == 3 and multilabel.lstm.hidden_size == 24


def test_frame_arithmetic_matches_pyannote():
    expected = np.load(FIXTURES / "powerset_small.npz")
    for num_samples, frames in zip(expected["rf_num_samples"], expected["rf_num_frames_out"]):
        assert receptive_field.num_frames(int(num_samples)) == frames
    for num_frames, size in zip(expected["rf_size_num_frames"], expected["rf_size"]):
        assert receptive_field.receptive_field_size(int(num_frames)) == size
    for frame, center in zip(expected["rf_center_frames"], expected["rf_center"]):
        assert receptive_field.receptive_field_center(int(frame)) == center


@pytest.mark.parametrize("model_id", [6, 7, 8])
def test_fusion_models_start_as_pyannote(model_id):
    """At step 0 every fusion model computes pyannote's output, whatever the video."""
    expected = np.load(FIXTURES / "powerset_small.npz")
    model = load_pretrained(str(FIXTURES / "powerset_small.bin"), model=model_id, esize=384)
    waveforms = torch.from_numpy(expected["waveforms"])
    video = torch.randn(2, 50, 384)
    mask = torch.rand(2, 50) > 0.5
    with torch.no_grad():
        ours = model(waveforms, video=video, video_mask=mask).numpy()
    assert np.abs(ours - expected["outputs"]).max() <= TOLERANCE
