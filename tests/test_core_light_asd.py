"""core.light_asd and core.mfcc against Light-ASD's and python_speech_features' own outputs."""

from pathlib import Path

import numpy as np
import pytest
import torch

from core.light_asd import (
    LIGHT_ASD_SHA256,
    WeightsMismatch,
    default_weights,
    load_light_asd,
    map_keys,
)
from core.mfcc import mfcc, num_frames

FIXTURES = Path(__file__).parent / "fixtures"
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "real" / "light-asd"
WEIGHTS = REAL / "pretrain_AVA_CVPR.model"
needs_weights = pytest.mark.skipif(not WEIGHTS.is_file(),
                                   reason="../shared/real/light-asd/ (Light-ASD weights) absent")


def _reference_inputs(reference):
    rng = np.random.default_rng(int(reference["seed"]))
    frames = int(reference["T"])
    faces = rng.integers(0, 256, size=(1, frames, 112, 112), dtype=np.uint8)
    features = rng.standard_normal((1, 4 * frames, 13)).astype(np.float32) * 10
    return torch.from_numpy(faces), torch.from_numpy(features)


@needs_weights
@torch.no_grad()
def test_outputs_equal_light_asd_own_code():
    reference = np.load(FIXTURES / "light_asd_reference.npz")
    faces, features = _reference_inputs(reference)
    model = load_light_asd(WEIGHTS)
    visual = model.embed_faces(faces)
    np.testing.assert_allclose(visual[0].numpy(), reference["visual"], atol=2e-5)
    np.testing.assert_allclose(model.embed_audio(features)[0].numpy(), reference["audio"],
                               atol=2e-5)
    np.testing.assert_allclose(model.speaking_scores(visual, features)[0].numpy(),
                               reference["av_log_odds"], atol=2e-5)
    np.testing.assert_allclose(model.visual_scores(visual)[0].numpy(), reference["v_log_odds"],
                               atol=2e-5)


@needs_weights
@torch.no_grad()
def test_folded_eval_path_equals_the_3d_modules():
    model = load_light_asd(WEIGHTS)
    faces = torch.randint(0, 256, (2, 9, 112, 112), dtype=torch.uint8)
    x = (faces.float() / 255 - 0.4161) / 0.1688
    encoder = model.visual
    y = encoder._pool(encoder.block1(x[:, None]))
    y = encoder.block3(encoder._pool(encoder.block2(y))).amax(dim=(3, 4)).transpose(1, 2)
    torch.testing.assert_close(model.embed_faces(faces), y, atol=1e-4, rtol=1e-4)


@needs_weights
def test_weights_are_checked(tmp_path, monkeypatch):
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    other = tmp_path / "retrained.model"
    torch.save({k: v + 0.0 if v.is_floating_point() else v for k, v in state.items()}, other)
    with pytest.raises(WeightsMismatch, match="sha256"):
        load_light_asd(other)
    load_light_asd(other, check_sha256=False)          # same architecture: accepted on request
    state["model.visualEncoder.block9.s_3.weight"] = torch.zeros(1)
    torch.save(state, other)
    with pytest.raises(WeightsMismatch, match="block9"):
        load_light_asd(other, check_sha256=False)
    del state["model.visualEncoder.block9.s_3.weight"], state["lossV.FC.bias"]
    torch.save(state, other)
    with pytest.raises(WeightsMismatch, match="head_visual.bias"):
        load_light_asd(other, check_sha256=False)
    with pytest.raises(WeightsMismatch, match="unexpected key 'other.x'"):
        map_keys({"other.x": torch.zeros(1)})
    monkeypatch.setenv("AVDIAR_WEIGHTS", str(tmp_path))
    assert default_weights() == WEIGHTS        # not in the cache: the shared copy
    (tmp_path / "light-asd").mkdir()
    (tmp_path / "light-asd" / "pretrain_AVA_CVPR.model").write_bytes(WEIGHTS.read_bytes())
    assert default_weights() == tmp_path / "light-asd" / "pretrain_AVA_CVPR.model"


def test_released_checkpoints_are_named_with_their_hashes():
    assert set(LIGHT_ASD_SHA256) == {"pretrain_AVA_CVPR.model", "finetuning_TalkSet.model"}
    assert all(len(h) == 64 for h in LIGHT_ASD_SHA256.values())


def test_a_missing_weights_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.model"):
        load_light_asd(tmp_path / "nothing.model")


def test_mfcc_equals_python_speech_features():
    reference = np.load(FIXTURES / "mfcc_reference.npz")
    for name in ("long", "short"):
        ours = mfcc(torch.from_numpy(reference[f"{name}_signal"])).numpy()
        expected = reference[f"{name}_mfcc"]
        assert ours.shape == expected.shape
        np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=1e-5)


def test_mfcc_frame_count():
    for samples, frames in ((1, 1), (400, 1), (401, 2), (560, 2), (561, 3), (16000, 99)):
        assert num_frames(samples) == frames
        assert mfcc(torch.zeros(samples)).shape == (frames, 13)
    with pytest.raises(ValueError, match="mono"):
        mfcc(torch.zeros(2, 100))
