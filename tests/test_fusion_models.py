"""Fusion models 6, 7, 8: shapes, function preservation, masks, training, freezing, parts."""

import copy

import pytest
import torch
import torch.nn.functional as F

from core.backbone import PyanNet
from core.models import (
    MODEL_CHOICES,
    MODEL_IDS,
    build_model,
    fusion_stage,
    model_class,
    model_name,
    takes_video,
    video_size,
)
from core.parts import freeze, param_groups, parameter_counts, parts, summary

SMALL = dict(lstm={"hidden_size": 16, "num_layers": 2, "bidirectional": True, "dropout": 0.0},
             linear={"hidden_size": 16, "num_layers": 2})
FUSION = dict(d_model=32, num_layers=2, num_heads=4, dropout=0.0, modality_dropout=0.1)
FUSION_IDS = (6, 7, 8)
ESIZE = 24


def audio_model(seed=0):
    torch.manual_seed(seed)
    return PyanNet(**copy.deepcopy(SMALL)).eval()


def fusion_model(model, esize=ESIZE, seed=1, **kwargs):
    torch.manual_seed(seed)
    return build_model(model, esize=esize, **copy.deepcopy(SMALL), **{**FUSION, **kwargs}).eval()


def copy_audio_weights(fusion, audio):
    """Copy every audio tensor into the fusion model; model 8's wider first LSTM layer gets
    the audio weights in its first columns (what load_pretrained does)."""
    own = fusion.state_dict()
    with torch.no_grad():
        for key, value in audio.state_dict().items():
            if own[key].shape == value.shape:
                own[key].copy_(value)
            else:
                assert key.startswith("lstm.weight_ih_l0"), key
                own[key][:, : value.shape[1]].copy_(value)
    return fusion


def perturb_fusion(fusion, seed=2):
    """Give the zero-initialised video entry points random values, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in fusion.named_parameters():
            if name.startswith("coattention.audio_out"):
                param.copy_(0.3 * torch.randn(param.shape, generator=g))
        if fusion.model_id == 8:
            for name in ("weight_ih_l0", "weight_ih_l0_reverse"):
                weight = getattr(fusion.lstm, name)
                cols = weight[:, fusion.lstm_audio_inputs:]
                cols.copy_(0.3 * torch.randn(cols.shape, generator=g))
    return fusion


def batch(batch_size=3, duration_s=2.0, fps=25.0, esize=ESIZE, seed=3):
    g = torch.Generator().manual_seed(seed)
    waveforms = 0.1 * torch.randn(batch_size, 1, int(duration_s * 16000), generator=g)
    video = torch.randn(batch_size, round(duration_s * fps), esize, generator=g)
    return waveforms, video


@pytest.mark.parametrize("model", FUSION_IDS)
def test_learned_locality_is_the_default_and_old_checkpoints_load_without_it(model):
    from core.models import checkpoint_hparams

    net = fusion_model(model)
    assert net.fusion_hparams["learned_locality"] is True
    assert net.coattention.log_tau.shape == (net.fusion_hparams["num_heads"],)
    assert fusion_model(model, locality_tau_s=0.3).fusion_hparams["learned_locality"] is False
    # a checkpoint from before learned_locality: no log_tau in its weights
    old_hparams = {k: v for k, v in net.hparams.items() if k != "learned_locality"}
    old_weights = {k: v for k, v in net.state_dict().items() if not k.endswith("log_tau")}
    rebuilt = build_model(**checkpoint_hparams(old_hparams))
    rebuilt.load_state_dict(old_weights)  # strict: the architectures match
    assert not rebuilt.coattention.learned_locality
    assert build_model(**checkpoint_hparams(net.hparams)).coattention.learned_locality


@pytest.mark.parametrize("model", FUSION_IDS)
@pytest.mark.parametrize("duration_s,batch_size,esize,fps",
                         [(5.0, 1, 384, 25.0), (10.0, 4, 1024, 30.0), (5.0, 4, 1024, 25.0),
                          (10.0, 1, 384, 30.0)])
def test_shapes(model, duration_s, batch_size, esize, fps):
    net = fusion_model(model, esize=esize, video_fps=fps)
    waveforms, video = batch(batch_size, duration_s, fps, esize)
    with torch.no_grad():
        out = net(waveforms, video)
    assert out.shape == (batch_size, net.num_frames(waveforms.shape[-1]), 7)
    assert out.shape[1] == (589 if duration_s == 10.0 else 293)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("model", FUSION_IDS)
def test_function_preservation_at_init(model):
    audio = audio_model()
    net = copy_audio_weights(fusion_model(model), audio)
    waveforms, video = batch()
    partial = torch.rand(video.shape[:2], generator=torch.Generator().manual_seed(4)) > 0.4
    with torch.no_grad():
        expected = audio(waveforms)
        outputs = [net(waveforms, video), net(waveforms, video, partial),
                   net(waveforms, video, torch.zeros_like(partial)), net(waveforms, None),
                   net(waveforms, video=3.0 * video)]
    for out in outputs:
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("model", FUSION_IDS)
def test_sample_without_video_adds_nothing_even_after_training(model):
    audio = audio_model()
    net = perturb_fusion(copy_audio_weights(fusion_model(model, locality_tau_s=0.5), audio))
    waveforms, video = batch()
    mask = torch.ones(video.shape[:2], dtype=torch.bool)
    mask[1] = False
    mask[2, 10:] = False
    video[1] = float("nan")
    with torch.no_grad():
        expected = audio(waveforms)
        out = net(waveforms, video, mask)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1], expected[1], rtol=0, atol=1e-5)
    assert not torch.allclose(out[0], expected[0], atol=1e-4)  # video has an effect now
    assert not torch.allclose(out[2], expected[2], atol=1e-4)


def test_early_fusion_keeps_the_lstm_input_in_sincnet_range():
    """Model 7 adds the co-attention residual before SincNet's last LeakyReLU: however
    negative the residual, the LSTM gets LeakyReLU outputs (a pretrained LSTM diverged on
    the strongly negative inputs that adding after the LeakyReLU gave it)."""
    net = fusion_model(7)
    with torch.no_grad():
        net.coattention.audio_out.bias.fill_(-5.0)  # a residual of -5 on every channel
    seen = {}
    net.lstm.register_forward_hook(lambda m, inputs, output: seen.update(x=inputs[0]))
    waveforms = torch.randn(2, 1, 16000) * 0.1
    video = torch.randn(2, 25, ESIZE)
    with torch.no_grad():
        frames = net.frames(waveforms)
        net(waveforms, video)
    before = torch.where(frames >= 0, frames, frames / 0.01)
    torch.testing.assert_close(seen["x"], F.leaky_relu(before - 5.0, 0.01))
    assert float(seen["x"].min()) >= 0.01 * (float(before.min()) - 5.0) - 1e-6
    assert float(seen["x"].min()) > -1.0  # added after the LeakyReLU it would be about -5
    # a sample without video frames still gets exactly the SincNet frames
    with torch.no_grad():
        net(waveforms, video, torch.zeros(2, 25, dtype=torch.bool))
    torch.testing.assert_close(seen["x"], frames, rtol=0, atol=0)


def test_early_fusion_checkpoints_from_before_keep_their_function():
    """A model 7 checkpoint without residual_before_activation (written before it existed)
    is rebuilt adding the residual after the LeakyReLU, as it was trained."""
    from core.models import checkpoint_hparams
    new = fusion_model(7)
    assert new.hparams["residual_before_activation"] is True
    old_hparams = {k: v for k, v in new.hparams.items() if k != "residual_before_activation"}
    old = build_model(**checkpoint_hparams(old_hparams))
    assert old.residual_before_activation is False
    old.load_state_dict(new.state_dict())
    old.eval()
    with torch.no_grad():
        old.coattention.audio_out.bias.fill_(-5.0)
    seen = {}
    old.lstm.register_forward_hook(lambda m, inputs, output: seen.update(x=inputs[0]))
    waveforms, video = torch.randn(2, 1, 16000) * 0.1, torch.randn(2, 25, ESIZE)
    with torch.no_grad():
        old(waveforms, video)
        frames = old.frames(waveforms)
    torch.testing.assert_close(seen["x"], frames - 5.0)
    assert "residual_before_activation" not in checkpoint_hparams(fusion_model(6).hparams)


@pytest.mark.parametrize("model", FUSION_IDS)
def test_masked_frame_values_change_nothing(model):
    net = perturb_fusion(fusion_model(model))
    waveforms, video = batch()
    mask = torch.ones(video.shape[:2], dtype=torch.bool)
    mask[:, 5:15] = False
    changed = video.clone()
    changed[:, 5:15] = 50 * torch.randn(changed[:, 5:15].shape)
    with torch.no_grad():
        out = net(waveforms, video, mask)
        torch.testing.assert_close(net(waveforms, changed, mask), out, rtol=0, atol=1e-6)
        assert not torch.allclose(net(waveforms, changed), out, atol=1e-4)


@pytest.mark.parametrize("model", FUSION_IDS)
def test_video_centering_ignores_what_is_constant_over_a_chunk(model):
    """Centred (the default): adding one vector to every present frame of a chunk, e.g.
    another face identity, changes nothing; what changes over time still matters."""
    waveforms, video = batch()
    mask = torch.ones(video.shape[:2], dtype=torch.bool)
    mask[0, 20:30] = False
    shifted = video + 2.0 * torch.randn(video.shape[0], 1, video.shape[2])
    rolled = video.roll(7, dims=1)
    for centering in (True, False):
        net = perturb_fusion(fusion_model(model, video_centering=centering))
        assert net.hparams["video_centering"] is centering
        with torch.no_grad():
            out = net(waveforms, video, mask)
            moved = net(waveforms, shifted, mask)
            assert not torch.allclose(net(waveforms, rolled, mask), out, atol=1e-4)
        if centering:
            torch.testing.assert_close(moved, out, rtol=0, atol=1e-5)
        else:
            assert not torch.allclose(moved, out, atol=1e-4)


def test_checkpoints_from_before_video_centering_load_without_it(tmp_path):
    from core.models import checkpoint_hparams

    new = fusion_model(6).hparams
    old = {k: v for k, v in new.items() if k != "video_centering"}
    assert checkpoint_hparams(new)["video_centering"] is True
    assert build_model(**checkpoint_hparams(old)).video_centering is False
    assert "video_centering" not in checkpoint_hparams(audio_model().hparams)


@pytest.mark.parametrize("model", FUSION_IDS)
def test_training_moves_fusion_and_frozen_lstm_stays(model):
    torch.manual_seed(0)
    net = copy_audio_weights(fusion_model(model), audio_model())
    freeze(net, "lstm")
    lstm_before = {k: v.clone() for k, v in net.lstm.state_dict().items()}
    fusion_before = {name: p.detach().clone() for name, p in net.named_parameters()
                     if name in parts(net)["fusion"]}
    groups = param_groups(net, lr=1e-3, fusion_lr=1e-2)
    assert [g["name"] for g in groups] == ["pretrained", "fusion"]
    in_optimizer = {id(p) for g in groups for p in g["params"]}
    assert not any(id(p) in in_optimizer for p in net.lstm.parameters())
    optimizer = torch.optim.Adam(groups)
    waveforms, video = batch(2, 1.0)
    target = torch.randint(0, 7, (2, net.num_frames(waveforms.shape[-1])))
    net.train()
    for _ in range(3):
        optimizer.zero_grad()
        loss = F.nll_loss(net(waveforms, video).transpose(1, 2), target)
        loss.backward()
        optimizer.step()
    net.eval()
    for key, value in net.lstm.state_dict().items():
        assert torch.equal(value, lstm_before[key]), key
    moved = [n for n, p in net.named_parameters() if n in fusion_before
             and not torch.equal(p, fusion_before[n])]
    # model 8's video projection only reaches the output through the LSTM's video columns,
    # which are zero at init and frozen with the LSTM: it cannot learn then (documented)
    expected = {n for n in fusion_before if not (model == 8 and n.startswith("video_proj"))}
    assert set(moved) == expected
    with torch.no_grad():
        assert not torch.allclose(net(waveforms, video), net(waveforms, video.flip(0)),
                                  atol=1e-6)


def test_hybrid_early_video_path_learns():
    net = fusion_model(8)
    cols_before = net.lstm.weight_ih_l0[:, 60:].detach().clone()
    proj_before = net.video_projection.weight.detach().clone()
    optimizer = torch.optim.Adam(param_groups(net, lr=1e-2))
    waveforms, video = batch(2, 1.0)
    target = torch.randint(0, 7, (2, net.num_frames(waveforms.shape[-1])))
    net.train()
    for _ in range(2):
        optimizer.zero_grad()
        F.nll_loss(net(waveforms, video).transpose(1, 2), target).backward()
        optimizer.step()
    assert torch.equal(cols_before, torch.zeros_like(cols_before))
    assert not torch.equal(net.lstm.weight_ih_l0[:, 60:], cols_before)
    assert not torch.equal(net.video_projection.weight, proj_before)


@pytest.mark.parametrize("model", FUSION_IDS)
def test_modality_dropout_only_in_training(model):
    net = perturb_fusion(fusion_model(model, modality_dropout=0.999999))
    waveforms, video = batch()
    with torch.no_grad():
        net.train()
        torch.testing.assert_close(net(waveforms, video), net(waveforms, None), rtol=0,
                                   atol=1e-6)
        net.eval()
        assert not torch.allclose(net(waveforms, video), net(waveforms, None), atol=1e-4)


@pytest.mark.parametrize("model", FUSION_IDS)
def test_hparams_rebuild_same_architecture(model):
    net = fusion_model(model, locality_tau_s=0.3, video_fps=30.0)
    hparams = copy.deepcopy(net.hparams)
    assert hparams["model"] == model_name(model) and hparams["esize"] == ESIZE
    rebuilt = build_model(**hparams)
    assert type(rebuilt) is type(net) and rebuilt.hparams == hparams
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == \
        {k: v.shape for k, v in net.state_dict().items()}
    assert rebuilt.model_id == MODEL_IDS[model_name(model)] and rebuilt.is_fusion


@pytest.mark.parametrize("model", FUSION_IDS)
def test_audio_keys_match_pyannote(model):
    audio, net = audio_model(), fusion_model(model)
    own = net.state_dict()
    for key, value in audio.state_dict().items():
        if model == 8 and key in ("lstm.weight_ih_l0", "lstm.weight_ih_l0_reverse"):
            assert own[key].shape == (value.shape[0], 60 + 64)
            assert torch.equal(own[key][:, 60:], torch.zeros(value.shape[0], 64))
        else:
            assert own[key].shape == value.shape, key
    assert set(parts(net)["fusion"]) == set(own) - set(audio.state_dict()) - {
        k for k in own if not any(k == n for n, _ in net.named_parameters())}


def test_errors_name_the_problem():
    net = fusion_model(6)
    waveforms, video = batch()
    with pytest.raises(ValueError, match=r"size 25 .*esize=24"):
        net(waveforms, torch.randn(3, 50, 25))
    with pytest.raises(ValueError, match="video_mask"):
        net(waveforms, video, torch.ones(3, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match="esize"):
        build_model("late", **SMALL)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("medium")
    with pytest.raises(ValueError, match="unknown part"):
        freeze(net, "lstm,decoder")
    assert model_name("8") == "hybrid" and model_name(7) == "early"


def test_the_registry_is_read_from_the_model_classes():
    """Ids, names, classes and video widths all come from the classes and built models."""
    assert MODEL_CHOICES == "0/audio, 6/late, 7/early, 8/hybrid"
    assert [model_class(i).__name__ for i in (0, 6, 7, 8)] == [
        "PyanNet", "LateFusion", "EarlyFusion", "HybridFusion"]
    assert model_class("Hybrid") is model_class(8) and model_name(" 6 ") == "late"
    assert fusion_stage(0) == "none (audio only)" and fusion_stage("late") == "late (after LSTM)"
    for bad in ("5", 9, True, None, "medium"):
        with pytest.raises(ValueError, match="unknown model .*0/audio, 6/late"):
            model_name(bad)
    audio, late = audio_model(), fusion_model(6, esize=12)
    assert not takes_video(audio) and video_size(audio) is None
    assert takes_video(late) and video_size(late) == 12
    assert not takes_video(torch.nn.Linear(2, 2))  # a module that does not say: audio-only


def test_parts_freezing_and_summary():
    net = fusion_model(8)
    frozen = freeze(net, ["sincnet", "fusion"])
    assert frozen and all(not p.requires_grad for n, p in net.named_parameters() if n in frozen)
    counts = parameter_counts(net)
    assert counts["sincnet"]["trainable"] == 0 and counts["sincnet"]["frozen"] > 0
    assert counts["fusion"]["trainable"] == 0 and counts["lstm"]["frozen"] == 0
    assert [g["name"] for g in param_groups(net, 1e-3)] == ["pretrained"]
    text = summary(net)
    assert "fusion" in text and "total" in text
    freeze(net, "fusion", frozen=False)
    assert counts != parameter_counts(net)
    audio = audio_model()
    assert parts(audio)["fusion"] == []
    assert build_model(0, esize=512, **SMALL).hparams == audio.hparams


def test_load_pretrained_fills_audio_and_preserves_function(tmp_path):
    from core.pretrained import load_pretrained
    from tests.pyannote_format import save_pyannote_checkpoint

    audio = audio_model(seed=5)
    with torch.no_grad():  # move off the default init so that a wrong fill shows
        for param in audio.parameters():
            param.add_(0.05 * torch.randn_like(param))
    path = tmp_path / "pytorch_model.bin"
    save_pyannote_checkpoint(audio.state_dict(), str(path), duration_s=2.0,
                             hparams={**SMALL, "lstm": {**SMALL["lstm"], "monolithic": True}})
    waveforms, video = batch()
    partial = torch.rand(video.shape[:2], generator=torch.Generator().manual_seed(6)) > 0.5
    with torch.no_grad():
        expected = audio(waveforms)
        for model in ("late", 7, "hybrid"):
            net = load_pretrained(str(path), model=model, esize=ESIZE, d_model=32)
            assert net.is_fusion and not net.training and net.hparams["d_model"] == 32
            for mask in (None, partial, torch.zeros_like(partial)):
                out = net(waveforms, video, mask)
                assert torch.isfinite(out).all()
                torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
            rebuilt = build_model(**net.hparams)
            rebuilt.load_state_dict(net.state_dict())
