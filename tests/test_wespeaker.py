"""core.wespeaker against pyannote.audio's WeSpeakerResNet34 (fixture made once; see
tests/fixtures/make_wespeaker_reference.py): same fbank, same embeddings, same keys."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from core.safe_pickle import load_checkpoint_file
from core.wespeaker import WeSpeakerResNet34, load_wespeaker, load_wespeaker_state, wespeaker_keys

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE = FIXTURES / "wespeaker_reference.json"
pytestmark = pytest.mark.skipif(not REFERENCE.is_file(), reason="WeSpeaker fixture missing")


def _meta():
    return json.loads(REFERENCE.read_text())


def _fill_from_recipe(resnet: torch.nn.Module, seed: int) -> None:
    """The fixture's documented seed recipe, reproduced in plain torch."""
    state = resnet.state_dict()
    for i, (name, tensor) in enumerate(state.items()):
        if not tensor.is_floating_point():
            continue
        g = torch.Generator().manual_seed(seed + i)
        shape = tensor.shape
        if name.endswith("running_var"):
            value = 0.5 + torch.rand(shape, generator=g)
        elif name.endswith("running_mean"):
            value = 0.1 * torch.randn(shape, generator=g)
        elif name.endswith("bias"):
            value = 0.1 * torch.randn(shape, generator=g)
        elif tensor.dim() == 1:
            value = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            value = torch.randn(shape, generator=g) / math.sqrt(shape[1:].numel())
        state[name] = value
    resnet.load_state_dict(state)


@pytest.fixture(scope="module")
def model():
    model = WeSpeakerResNet34().eval()
    _fill_from_recipe(model.resnet, _meta()["recipe"]["seed"])
    return model


@pytest.fixture(scope="module")
def data():
    return dict(np.load(FIXTURES / "wespeaker_reference.npz"))


def test_keys_and_parameter_count_match_pyannote():
    meta = _meta()
    ours = wespeaker_keys(WeSpeakerResNet34())
    theirs = meta["state_dict"]
    names = list(theirs) if isinstance(theirs, dict) else [k["key"] if isinstance(k, dict)
                                                           else k[0] for k in theirs]
    names = [n if n.startswith("resnet.") else f"resnet.{n}" for n in names]
    assert names == list(ours)
    count = sum(p.numel() for p in WeSpeakerResNet34().parameters())
    assert count == meta["num_parameters"]


def test_fbank_matches(model, data):
    fbank = model.fbank(torch.from_numpy(data["waveforms"]))
    torch.testing.assert_close(fbank[0], torch.from_numpy(data["fbank0"]), atol=1e-3, rtol=1e-4)


def test_embeddings_match(model, data):
    waveforms = torch.from_numpy(data["waveforms"])
    with torch.no_grad():
        plain = model(waveforms)
        w2 = model(waveforms, weights=torch.from_numpy(data["weights_2d"]))
        w3 = model(waveforms, weights=torch.from_numpy(data["weights_3d"]))
    for ours, name in ((plain, "embeddings"), (w2, "embeddings_w2"), (w3, "embeddings_w3")):
        theirs = torch.from_numpy(data[name])
        assert ours.shape == theirs.shape
        torch.testing.assert_close(ours, theirs, atol=2e-4, rtol=1e-3)
    # the weights matter: a wrong implementation of pooling would not pass above
    assert not torch.allclose(plain, w2, atol=1e-3)


def test_num_frames_match(model, data):
    for n, frames in zip(data["rf_num_samples"], data["rf_num_frames_out"]):
        assert model.num_frames(int(n)) == int(frames)


def test_skeleton_checkpoint_loads_through_safe_reader(tmp_path):
    path = FIXTURES / "wespeaker_skeleton.bin"
    model = load_wespeaker(str(path))
    state = model.state_dict()
    raw = load_checkpoint_file(path)["state_dict"]
    for i, key in enumerate(raw):
        if raw[key].is_floating_point():
            assert torch.all(state[key] == raw[key].float()), key
    assert model(torch.randn(1, 1, 8000)).shape == (1, 256)


def test_wrong_checkpoint_names_keys():
    model = WeSpeakerResNet34()
    state = dict(model.state_dict())
    state["resnet.extra.weight"] = torch.zeros(1)
    del state["resnet.seg_1.bias"]
    with pytest.raises(ValueError, match="extra.weight.*seg_1.bias"):
        load_wespeaker_state(model, state)


def test_fbank_is_the_loop_over_the_waveforms(model, data):
    """The vmapped fbank computes exactly what one kaldi.fbank call per waveform computes."""
    import torchaudio.compliance.kaldi as kaldi

    waveforms = torch.from_numpy(data["waveforms"])
    loop = torch.stack([kaldi.fbank(wave * (1 << 15), num_mel_bins=80, frame_length=25.0,
                                    frame_shift=10.0, dither=0.0, sample_frequency=16000,
                                    window_type="hamming", use_energy=False)
                        for wave in waveforms])
    assert torch.equal(model.fbank(waveforms), loop - loop.mean(dim=1, keepdim=True))


class _PerPair(torch.nn.Module):
    """The same model seen without `pools_speakers`: window_embeddings runs it once per
    (window, speaker) pair, the plain path."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.min_num_samples, self.dimension = model.min_num_samples, model.dimension

    def forward(self, waveforms, weights=None):
        return self.model(waveforms, weights=weights)


def test_window_embeddings_one_pass_per_window_is_one_per_pair(model):
    """One pass per window for all its local speakers gives the embeddings of one pass per
    (window, speaker): same NaNs (inactive, too short), same vectors to float rounding."""
    from eval.embeddings import window_embeddings
    from eval.inference import WindowOutput

    frames = 115  # the segmentation model's frames of a 2 s window
    activations = np.zeros((5, frames, 3), dtype=np.float32)
    activations[0, 10:60, 0] = 1
    activations[0, 50:110, 1] = 1   # overlaps speaker 0: overlap excluded from both
    activations[1, :, 2] = 1
    activations[2, 40:41, 1] = 1    # too short: NaN
    activations[4, 0:30, 0] = 1     # window 3 silent
    activations[4, 30:100, 1] = 1
    windows = WindowOutput(activations=activations, probabilities=activations,
                           chunk_starts_s=np.arange(5) * 0.5, window_s=2.0, center0_s=0.0,
                           frame_step_s=2.0 / frames, duration_s=4.0)
    waveform = 0.1 * torch.randn(1, 16000 * 4, generator=torch.Generator().manual_seed(5))
    assert model.pools_speakers
    shared = window_embeddings(model, waveform, windows, batch_size=2)
    plain = window_embeddings(_PerPair(model), waveform, windows, batch_size=2)
    assert shared.shape == plain.shape == (5, 3, 256)
    np.testing.assert_array_equal(np.isnan(shared), np.isnan(plain))
    assert np.isfinite(shared[[0, 0, 1, 4, 4], [0, 1, 2, 0, 1]]).all()
    assert np.isnan(shared[2, 1]).all() and np.isnan(shared[3]).all()
    np.testing.assert_allclose(shared, plain, rtol=1e-5, atol=1e-5 * np.nanmax(np.abs(plain)))


def test_channels_last_trunk_is_the_plain_layout(model, data):
    """The channels-last trunk computes the plain (contiguous) layout's embeddings."""
    import copy

    plain = copy.deepcopy(model)
    plain.resnet.memory_format = torch.contiguous_format
    assert model.resnet.memory_format == torch.channels_last
    waveforms = torch.from_numpy(data["waveforms"])
    weights = torch.from_numpy(data["weights_3d"])
    with torch.no_grad():
        for kwargs in ({}, {"weights": weights[:, 0]}, {"weights": weights}):
            fast, slow = model(waveforms, **kwargs), plain(waveforms, **kwargs)
            torch.testing.assert_close(fast, slow, atol=1e-5 * float(slow.abs().max()),
                                       rtol=1e-5)
