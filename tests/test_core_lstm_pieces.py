"""core/lstm_pieces.py: CPU inference a few sequences per call computes nn.LSTM."""

import pytest
import torch

import core.backbone
import core.lstm_pieces as lstm_pieces
from core import build_model
from core.lstm_pieces import in_pieces, lstm_in_pieces

FRAMES = 30


@pytest.fixture
def three_per_piece(monkeypatch):
    monkeypatch.setattr(lstm_pieces, "FRAMES_PER_CALL", 3 * FRAMES)


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def _lstm(batch_first: bool = True, dropout: float = 0.0) -> torch.nn.LSTM:
    torch.manual_seed(0)
    return torch.nn.LSTM(6, 16, num_layers=3, bidirectional=True, batch_first=batch_first,
                         dropout=dropout).eval()


@pytest.mark.parametrize("batch_first", [True, False])
def test_outputs_are_nn_lstm_bitwise(three_per_piece, batch_first):
    lstm = _lstm(batch_first)
    inputs = torch.randn(7, FRAMES, 6) if batch_first else torch.randn(FRAMES, 7, 6)
    with torch.inference_mode():
        assert in_pieces(lstm, inputs)  # 7 sequences: pieces of 3, 3 and 1
        torch.testing.assert_close(lstm_in_pieces(lstm, inputs), lstm(inputs)[0], rtol=0, atol=0)


def test_only_cpu_inference_on_more_than_a_piece(three_per_piece):
    lstm = _lstm(dropout=0.5)
    inputs = torch.randn(4, FRAMES, 6)
    assert not in_pieces(lstm, inputs)  # autograd on
    with torch.no_grad():
        assert in_pieces(lstm, inputs)
        assert not in_pieces(lstm, inputs[:3])  # one piece
        lstm.train()
        assert not in_pieces(lstm, inputs)  # dropout draws masks: training's path


def test_the_model_runs_its_lstm_in_pieces_at_one_thread(monkeypatch, three_per_piece,
                                                        threads):
    threads(1)
    calls = []
    real = core.backbone.lstm_in_pieces

    def spy(lstm, inputs):
        calls.append(inputs.shape[0])
        return real(lstm, inputs)

    monkeypatch.setattr(core.backbone, "lstm_in_pieces", spy)
    model = build_model("audio").eval()
    features = torch.randn(8, FRAMES, 60)
    with torch.inference_mode():
        pieces = model.run_lstm(features)
    outputs, _ = model.lstm(features)
    torch.testing.assert_close(pieces, outputs.detach(), rtol=0, atol=0)
    assert calls == [8]
