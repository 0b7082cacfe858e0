"""core/lstm_dropout.py: nn.LSTM layer by layer with rand-based dropout masks."""

import pytest
import torch

from core import build_model
from core.lstm_dropout import lstm_with_uniform_dropout


def _lstm(dropout: float, bidirectional: bool = True) -> torch.nn.LSTM:
    torch.manual_seed(0)
    return torch.nn.LSTM(6, 8, num_layers=3, bidirectional=bidirectional, batch_first=True,
                         dropout=dropout).train()


@pytest.mark.parametrize("bidirectional", [True, False])
def test_without_dropout_it_is_nn_lstm(bidirectional):
    lstm = _lstm(0.0, bidirectional)
    inputs = torch.randn(3, 20, 6)
    torch.testing.assert_close(lstm_with_uniform_dropout(lstm, inputs), lstm(inputs)[0],
                               rtol=0, atol=0)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_layer_by_layer_is_nn_lstm_when_every_mask_keeps_all(bidirectional):
    """p = 1e-9: every mask keeps everything and the 1 / keep scale rounds to 1 in float32,
    so the layer-by-layer path (each layer's slice of the weights) must give nn.LSTM's."""
    lstm = _lstm(0.0, bidirectional)
    inputs = torch.randn(3, 20, 6)
    expected = lstm(inputs)[0]
    lstm.dropout = 1e-9
    torch.testing.assert_close(lstm_with_uniform_dropout(lstm, inputs), expected, rtol=0, atol=0)


def test_dropout_zeroes_about_p_of_the_inputs_between_layers():
    """One frame, batch 1: a feature dropped before layer 2 leaves its column of layer 2's
    input-weight gradient exactly zero; with p = 0.5 about half the columns are."""
    for dropout, low, high in ((0.0, 0.0, 0.0), (0.5, 0.35, 0.65)):
        lstm = torch.nn.LSTM(6, 128, num_layers=2, bidirectional=True, batch_first=True,
                             dropout=dropout).train()
        torch.manual_seed(1)
        lstm_with_uniform_dropout(lstm, torch.randn(1, 1, 6)).sum().backward()
        zero_columns = (lstm.weight_ih_l1.grad == 0).all(dim=0).float().mean().item()
        assert low <= zero_columns <= high, (dropout, zero_columns)


def test_training_draws_are_seeded_and_differ_from_eval():
    lstm = _lstm(0.5)
    inputs = torch.randn(2, 30, 6)
    torch.manual_seed(3)
    first = lstm_with_uniform_dropout(lstm, inputs)
    torch.manual_seed(3)
    again = lstm_with_uniform_dropout(lstm, inputs)
    torch.manual_seed(4)
    other = lstm_with_uniform_dropout(lstm, inputs)
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.equal(first, other)
    assert not torch.equal(first, lstm.eval()(inputs)[0])


def test_the_backbone_uses_it_when_training_on_the_cpu(monkeypatch):
    """PyanNet.run_lstm: training with dropout goes through lstm_with_uniform_dropout (every
    LSTM weight gets a gradient); eval mode is nn.LSTM's own forward."""
    import core.backbone as backbone

    calls = []

    def counting(lstm, inputs):
        calls.append(inputs.shape)
        return lstm_with_uniform_dropout(lstm, inputs)

    monkeypatch.setattr(backbone, "lstm_with_uniform_dropout", counting)
    monkeypatch.setattr(backbone, "splits_batch", lambda lstm, inputs: False)
    model = build_model("audio", lstm={"hidden_size": 8, "num_layers": 2, "dropout": 0.5},
                        linear={"hidden_size": 8, "num_layers": 1}, duration_s=2.0)
    waveforms = 0.1 * torch.randn(2, 1, 32000)
    model.train()(waveforms).sum().backward()
    assert len(calls) == 1
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.lstm.parameters())
    with torch.no_grad():
        model.eval()(waveforms)
    assert len(calls) == 1
