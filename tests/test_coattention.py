"""Co-attention encoder: identity at init, masking, no-video samples, locality bias."""

import pytest
import torch

from core.coattention import CoAttentionEncoder, time_encoding

F_AUDIO, T_VIDEO, DA, DV = 30, 12, 10, 7


def make_encoder(seed=0, perturb=True, **kwargs):
    """A small encoder; with perturb, its zero-initialised out projection is randomised."""
    torch.manual_seed(seed)
    encoder = CoAttentionEncoder(DA, DV, d_model=16, num_layers=2, num_heads=2, dropout=0.0,
                                 **kwargs).eval()
    if perturb:
        with torch.no_grad():
            encoder.audio_out.weight.normal_()
            encoder.audio_out.bias.normal_()
    return encoder


def inputs(batch=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(batch, F_AUDIO, DA, generator=g)
    video = torch.randn(batch, T_VIDEO, DV, generator=g)
    audio_times = torch.arange(F_AUDIO) / 59.0
    video_times = torch.arange(T_VIDEO) / 25.0
    return audio, video, audio_times, video_times


def test_identity_at_init():
    encoder = make_encoder(perturb=False)
    audio, video, ta, tv = inputs()
    out = encoder(audio, video, ta, tv)
    assert out.shape == audio.shape
    assert torch.equal(out, audio)


def test_video_changes_output_once_trained():
    encoder = make_encoder()
    audio, video, ta, tv = inputs()
    out1 = encoder(audio, video, ta, tv)
    out2 = encoder(audio, video + 1.0, ta, tv)
    assert not torch.allclose(out1, out2)
    assert not torch.equal(out1, audio)


def test_masked_frame_values_do_not_matter():
    encoder = make_encoder()
    audio, video, ta, tv = inputs()
    mask = torch.ones(3, T_VIDEO, dtype=torch.bool)
    mask[:, 4:7] = False
    mask[1, :] = torch.rand(T_VIDEO, generator=torch.Generator().manual_seed(3)) > 0.5
    changed = video.clone()
    changed[~mask] = torch.randn(int((~mask).sum()), DV) * 100
    changed[0, 5] = float("nan")
    out1 = encoder(audio, video, ta, tv, mask)
    out2 = encoder(audio, changed, ta, tv, mask)
    assert torch.isfinite(out2).all()
    torch.testing.assert_close(out1, out2, rtol=0, atol=1e-6)
    # and the mask does something: unmasking those frames changes the output
    assert not torch.allclose(out1, encoder(audio, changed.nan_to_num(), ta, tv))


@pytest.mark.parametrize("tau", [None, 0.2])
def test_sample_without_video_is_exactly_unchanged(tau):
    encoder = make_encoder(locality_tau_s=tau)
    audio, video, ta, tv = inputs()
    mask = torch.ones(3, T_VIDEO, dtype=torch.bool)
    mask[1] = False
    mask[2, ::2] = False
    video[1] = float("nan")
    out = encoder(audio, video, ta, tv, mask)
    assert torch.isfinite(out).all()
    assert torch.equal(out[1], audio[1])
    assert not torch.allclose(out[0], audio[0])
    assert not torch.allclose(out[2], audio[2])
    # all missing, or no video at all: the input comes back exactly
    assert torch.equal(encoder(audio, video, ta, tv, torch.zeros_like(mask)), audio)
    assert torch.equal(encoder(audio, None, ta, tv), audio)


def test_all_masked_gradients_are_finite():
    encoder = make_encoder()
    encoder.train()
    audio, video, ta, tv = inputs()
    audio.requires_grad_(True)
    mask = torch.zeros(3, T_VIDEO, dtype=torch.bool)
    mask[0, :3] = True
    encoder(audio, video, ta, tv, mask).square().sum().backward()
    assert torch.isfinite(audio.grad).all()
    for name, p in encoder.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


def test_locality_bias_favours_nearby_frames():
    """With a tiny tau, audio frames only see video near their own time: changing a video
    frame far from every early audio frame leaves those frames (almost) unchanged."""
    torch.manual_seed(0)
    encoder = CoAttentionEncoder(DA, DV, d_model=16, num_layers=1, num_heads=2, dropout=0.0,
                                 locality_tau_s=0.002).eval()
    with torch.no_grad():
        encoder.audio_out.weight.normal_()
    audio, video, ta, tv = inputs(batch=1)
    changed = video.clone()
    changed[0, -1] += 5.0  # last video frame at 0.44 s; audio frames 0..5 are at < 0.09 s
    out1, out2 = encoder(audio, video, ta, tv), encoder(audio, changed, ta, tv)
    assert torch.allclose(out1[0, :5], out2[0, :5], atol=1e-5)
    assert not torch.allclose(out1[0, -3:], out2[0, -3:], atol=1e-3)


def test_learned_locality_starts_local_and_learns_its_widths():
    """Heads start at widths spread from LEARNED_TAUS_S[0] to [1]; the narrowest one then
    reads only video near each audio frame, and the widths take gradients."""
    from core.coattention import LEARNED_TAUS_S

    encoder = make_encoder(learned_locality=True)
    torch.testing.assert_close(encoder.log_tau.exp(), torch.tensor(LEARNED_TAUS_S))
    assert torch.equal(make_encoder(perturb=False, learned_locality=True)(*inputs()),
                       inputs()[0])  # still the identity at initialisation
    audio, video, ta, tv = inputs()
    a = encoder.audio_in(audio) + time_encoding(ta, 16)
    v = encoder.video_in(video) + time_encoding(tv, 16)
    mask, _ = encoder.attention_masks(ta, tv, torch.ones(3, T_VIDEO, dtype=torch.bool))
    layer = encoder.layers[0]
    weights = layer.audio_to_video.weights(layer.norm_audio(a), layer.norm_video(v),
                                           mask)  # (B, h, F, Tv)
    distance = (ta[:, None] - tv[None, :]).abs()
    spread = (weights * distance).sum(-1).mean(dim=(0, 2))  # (heads,) seconds
    assert spread[0] < 0.06 and spread[1] > 0.1  # narrow: about a video frame; wide: all
    encoder.train()
    encoder(audio, video, ta, tv).square().sum().backward()
    assert encoder.log_tau.grad is not None and encoder.log_tau.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="not both"):
        CoAttentionEncoder(4, 4, d_model=8, num_heads=2, locality_tau_s=0.2,
                           learned_locality=True)


@pytest.mark.parametrize("float_mask", [False, True])
def test_cross_attention_weights_are_what_forward_uses(float_mask):
    from core.coattention import CrossAttention

    torch.manual_seed(0)
    attention = CrossAttention(16, 4)
    x, context = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    mask = torch.rand(2, 1, 5, 7) > 0.3
    mask[..., 0] = True
    if float_mask:
        mask = torch.randn(2, 4, 5, 7).masked_fill(~mask, float("-inf"))
    _, _, v = attention.heads(x, context)
    mixed = (attention.weights(x, context, mask) @ v).transpose(1, 2).reshape(2, 5, 16)
    torch.testing.assert_close(attention(x, context, mask), attention.out(mixed))


def test_time_encoding_shape_and_errors():
    enc = time_encoding(torch.tensor([0.0, 0.5, 1.0]), 8)
    assert enc.shape == (3, 8)
    assert not torch.allclose(enc[0], enc[1])
    with pytest.raises(ValueError, match="even"):
        time_encoding(torch.zeros(2), 7)
    with pytest.raises(ValueError, match="num_heads"):
        CoAttentionEncoder(4, 4, d_model=10, num_heads=4)
    with pytest.raises(ValueError, match="locality_tau_s"):
        CoAttentionEncoder(4, 4, d_model=8, num_heads=2, locality_tau_s=0.0)
