"""SincNet and PyanNet: frame arithmetic, shapes, input checks, gradients, eval cache."""

import pytest
import torch

from core import receptive_field
from core.backbone import PyanNet
from core.sincnet import SincFilterbank, SincNet

SMALL = dict(lstm={"hidden_size": 16, "num_layers": 2, "bidirectional": True, "dropout": 0.0},
             linear={"hidden_size": 16, "num_layers": 2})


def test_frame_arithmetic_matches_pyannote_numbers():
    assert receptive_field.num_frames(160000) == 589
    assert receptive_field.receptive_field_step() == 270
    assert receptive_field.receptive_field_size() == 991
    assert receptive_field.receptive_field_center(0) == 495
    assert receptive_field.receptive_field_center(3) == 495 + 3 * 270
    times = receptive_field.frame_times(589)
    assert times.shape == (589,)
    assert times[0].item() == pytest.approx(495 / 16000)
    assert (times[1] - times[0]).item() == pytest.approx(270 / 16000)


@pytest.mark.parametrize("num_samples", [1261, 16000, 80000, 160000, 12345])
def test_num_frames_agrees_with_the_network(num_samples):
    model = PyanNet(**SMALL).eval()
    with torch.no_grad():
        scores = model(torch.randn(1, 1, num_samples))
    assert scores.shape == (1, model.num_frames(num_samples), 7)


def test_receptive_field_is_what_the_network_sees():
    """Changing a sample just outside frame 0's receptive field leaves frame 0 unchanged."""
    sincnet = SincNet().eval()
    x = torch.randn(1, 1, 4000)
    size = receptive_field.receptive_field_size()
    y = x.clone()
    y[..., size:] += 1.0
    with torch.no_grad():
        # Instance norms see the whole input; compare the convolution stack before them.
        a = sincnet.conv1d[0](x)[..., :1]
        b = sincnet.conv1d[0](y)[..., :1]
    assert torch.equal(a, b)


def test_multilabel_model_uses_sigmoid():
    model = PyanNet(**SMALL, num_speakers=4, powerset_max=0).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 16000))
    assert out.shape[-1] == 4 and model.powerset is None
    assert (out >= 0).all() and (out <= 1).all()


def test_powerset_output_is_log_probabilities():
    model = PyanNet(**SMALL).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 16000))
    assert torch.allclose(out.exp().sum(-1), torch.ones(2, out.shape[1]), atol=1e-5)


@pytest.mark.parametrize("shape", [(16000,), (2, 16000), (2, 2, 16000)])
def test_wrong_waveform_shape_is_a_clear_error(shape):
    model = PyanNet(**SMALL)
    with pytest.raises(ValueError, match="waveforms must be"):
        model(torch.randn(*shape))


def test_gradient_reaches_sinc_cutoffs():
    model = PyanNet(**SMALL).train()
    model(torch.randn(2, 1, 16000)).sum().backward()
    bank = model.sincnet.conv1d[0].filterbank
    assert bank.low_hz_.grad is not None and bank.low_hz_.grad.abs().sum() > 0
    assert bank.band_hz_.grad is not None and bank.band_hz_.grad.abs().sum() > 0


def test_filter_cache_follows_parameter_updates():
    bank = SincFilterbank().eval()
    with torch.no_grad():
        first = bank.filters().clone()
        assert bank.filters() is bank.filters()  # cached in eval mode without grad
        bank.low_hz_.add_(100.0)
        second = bank.filters()
    assert not torch.allclose(first, second)
    bank.train()
    assert torch.allclose(bank.filters().detach(), second)


def test_filterbank_layout():
    bank = SincFilterbank()
    filters = bank.filters()
    assert filters.shape == (80, 1, 251)
    assert bank.low_hz_.shape == (40, 1) and bank.band_hz_.shape == (40, 1)
    # cosine filters are even, sine filters odd around the centre tap
    assert torch.allclose(filters[:40], filters[:40].flip(-1), atol=1e-6)
    assert torch.allclose(filters[40:], -filters[40:].flip(-1), atol=1e-6)


def test_hparams_rebuild_the_same_architecture():
    from core import build_model

    model = PyanNet(**SMALL, num_speakers=4, powerset_max=2, duration_s=5.0)
    again = build_model(**model.hparams)
    assert {k: v.shape for k, v in model.state_dict().items()} == \
        {k: v.shape for k, v in again.state_dict().items()}
    assert again.duration_s == 5.0 and again.num_classes == model.num_classes


def test_segmentation_3_0_size():
    """The default architecture is segmentation-3.0's: 1,473,265 parameters."""
    model = PyanNet()
    assert sum(p.numel() for p in model.parameters()) == 1473265


def _unfolded_sincnet(sincnet, waveforms):
    """SincNet as pyannote writes it: affine waveform norm, convolution, abs, max_pool."""
    import torch.nn.functional as F

    outputs = sincnet.wav_norm1d(waveforms)
    filters = sincnet.conv1d[0].filterbank.filters()
    outputs = torch.abs(F.conv1d(outputs, filters.to(outputs.dtype), stride=sincnet.stride))
    outputs = F.leaky_relu(sincnet.norm1d[0](F.max_pool1d(outputs, 3, 3)))
    for index in (1, 2):
        outputs = F.max_pool1d(sincnet.conv1d[index](outputs), 3, 3)
        outputs = F.leaky_relu(sincnet.norm1d[index](outputs))
    return outputs


def test_folded_waveform_norm_and_pooling_match_pyannote_forward_and_gradients():
    """The waveform norm's affine folded into the sinc filters and the reshaped max pool give
    pyannote's values and gradients (float64, non-trivial affine, odd length)."""
    torch.manual_seed(0)
    ours = SincNet().double().train()
    with torch.no_grad():
        ours.wav_norm1d.weight.fill_(1.7)
        ours.wav_norm1d.bias.fill_(-0.3)
    reference = SincNet().double().train()
    reference.load_state_dict(ours.state_dict())
    waveforms = torch.randn(2, 1, 16000 + 123, dtype=torch.float64)
    out, expected = ours(waveforms), _unfolded_sincnet(reference, waveforms)
    assert (out - expected).abs().max() < 1e-10
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    (expected * weights).sum().backward()
    for (name, a), b in zip(ours.named_parameters(), reference.parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-7, atol=1e-12), name
