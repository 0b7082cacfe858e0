"""core/lstm_threads.py: the LSTM's batch in two halves on two threads computes nn.LSTM."""

import pytest
import torch

from core import build_model
from core.lstm_dropout import lstm_with_uniform_dropout
from core.lstm_threads import lstm_in_halves, splits_batch


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _lstm(dropout: float = 0.0, batch_first: bool = True) -> torch.nn.LSTM:
    torch.manual_seed(0)
    return torch.nn.LSTM(6, 16, num_layers=3, bidirectional=True, batch_first=batch_first,
                         dropout=dropout)


@pytest.mark.parametrize("batch_first", [True, False])
def test_eval_outputs_are_nn_lstm_bitwise(two_threads, batch_first):
    lstm = _lstm(batch_first=batch_first).eval()
    inputs = torch.randn(5, 40, 6) if batch_first else torch.randn(40, 5, 6)
    assert splits_batch(lstm, inputs)
    with torch.inference_mode():
        torch.testing.assert_close(lstm_in_halves(lstm, inputs), lstm(inputs)[0], rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(lstm_in_halves(lstm, inputs), lstm(inputs)[0], rtol=0, atol=0)
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_training_outputs_and_gradients_match_one_call(two_threads, dropout):
    """Same seed, same masks: outputs and input gradients equal, weight gradients (the two
    halves' sums) equal to float32 rounding."""
    lstm = _lstm(dropout).train()
    reference = lstm_with_uniform_dropout if dropout else (lambda m, x: m(x)[0])
    inputs = torch.randn(4, 30, 6)
    upstream = torch.randn(4, 30, 32)
    results = []
    for run in (reference, lstm_in_halves):
        lstm.zero_grad()
        leaf = inputs.clone().requires_grad_()
        torch.manual_seed(7)
        outputs = run(lstm, leaf)
        outputs.backward(upstream)
        results.append((outputs.detach(), leaf.grad, [p.grad.clone() for p in lstm.parameters()]))
    (out_a, grad_a, weights_a), (out_b, grad_b, weights_b) = results
    torch.testing.assert_close(out_b, out_a, rtol=0, atol=0)
    torch.testing.assert_close(grad_b, grad_a, rtol=0, atol=0)
    for a, b in zip(weights_a, weights_b):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    if dropout:
        torch.manual_seed(8)
        assert not torch.equal(lstm_in_halves(lstm, inputs), out_a)


def test_frozen_weights_get_no_gradient(two_threads):
    lstm = _lstm().train().requires_grad_(False)
    leaf = torch.randn(3, 20, 6, requires_grad=True)
    lstm_in_halves(lstm, leaf).sum().backward()
    assert leaf.grad is not None and leaf.grad.abs().sum() > 0
    assert all(p.grad is None for p in lstm.parameters())


def test_autocast_reaches_the_threads(two_threads):
    lstm = _lstm().eval()
    inputs = torch.randn(4, 20, 6)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        halves, whole = lstm_in_halves(lstm, inputs), lstm(inputs)[0]
    assert halves.dtype == torch.bfloat16
    torch.testing.assert_close(halves, whole, rtol=0, atol=0)


def test_errors_reach_the_caller_and_threads_are_restored(two_threads):
    lstm = _lstm().eval()
    with pytest.raises(RuntimeError):
        lstm_in_halves(lstm, torch.randn(4, 20, 5))  # 5 features, the LSTM takes 6
    assert torch.get_num_threads() == 2


def test_the_backbone_splits_only_with_two_threads(monkeypatch):
    import core.backbone as backbone

    calls = []

    def counting(lstm, inputs):
        calls.append(inputs.shape[0])
        return lstm_in_halves(lstm, inputs)

    monkeypatch.setattr(backbone, "lstm_in_halves", counting)
    model = build_model("audio", lstm={"hidden_size": 8, "num_layers": 2, "dropout": 0.5},
                        linear={"hidden_size": 8, "num_layers": 1}, duration_s=2.0)
    waveforms = 0.1 * torch.randn(2, 1, 32000)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        model.train()(waveforms).sum().backward()
        assert calls == []
        torch.set_num_threads(2)
        model.zero_grad()
        model.train()(waveforms).sum().backward()
        assert calls == [2]
        assert all(p.grad is not None and p.grad.abs().sum() > 0
                   for p in model.lstm.parameters())
        with torch.no_grad():
            model.eval()(waveforms[:1])  # a batch of one is not split
        assert calls == [2]
    finally:
        torch.set_num_threads(before)
