"""core/sincnet_windows.py: SincNet over evenly spaced windows of one stretch computes
SincNet's per-window forward, across chunk and piece boundaries and reused buffers."""

import pytest
import torch

import core.sincnet_windows as sincnet_windows
from core.sincnet import SincNet
from core.sincnet_windows import Workspace, sincnet_over_windows

WINDOW = 16000  # 1 s windows keep the tests fast; the frame arithmetic is the same


def _sincnet(gamma: float = 1.0, beta: float = 0.0) -> SincNet:
    """A SincNet with non-trivial norms and a bumped filterbank, in eval mode."""
    torch.manual_seed(0)
    sincnet = SincNet()
    with torch.no_grad():
        for parameter in sincnet.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
        sincnet.wav_norm1d.weight.fill_(gamma)
        sincnet.wav_norm1d.bias.fill_(beta)
    return sincnet.eval()


def _stretch(count: int, step: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    samples = (count - 1) * step + WINDOW
    # a level that changes along the stretch: every window gets its own norm
    return 0.1 * torch.randn(1, samples, generator=generator) * torch.linspace(0.2, 2.0, samples)


def _windows(stretch: torch.Tensor, step: int) -> torch.Tensor:
    return stretch.unfold(-1, WINDOW, step).transpose(0, 1).contiguous()


def _per_window_float64(sincnet: SincNet, windows: torch.Tensor) -> torch.Tensor:
    reference = _sincnet()
    reference.load_state_dict(sincnet.state_dict())
    with torch.no_grad():
        return reference.double()(windows.double())


@pytest.mark.parametrize("gamma,beta,step,count", [
    (1.0, 0.0, 1600, 6),    # 160 frames apart: the pool phase changes from window to window
    (-0.7, 0.2, 480, 5),    # 48 frames apart (one phase); a negative norm weight
    (1.3, -0.5, 3200, 9),   # several chunks and a partial last one
])
def test_equals_the_per_window_forward(monkeypatch, gamma, beta, step, count):
    monkeypatch.setattr(sincnet_windows, "CPU_FRAMES_PER_PIECE", 700)  # several pieces
    sincnet = _sincnet(gamma, beta)
    stretch = _stretch(count, step)
    windows = _windows(stretch, step)
    with torch.inference_mode():
        shared = sincnet_over_windows(sincnet, stretch, step, count, WINDOW)
        plain = sincnet(windows)
    truth = _per_window_float64(sincnet, windows)
    assert shared.shape == plain.shape == (count, 60, truth.shape[-1])
    assert count > sincnet_windows.CPU_WINDOWS_PER_CHUNK
    # both float32 computations are as close to the float64 one
    plain_error = (plain.double() - truth).abs().max()
    assert (shared.double() - truth).abs().max() <= 2 * plain_error + 1e-6


def test_reused_buffers_carry_nothing_over(monkeypatch):
    """A workspace used for one stretch gives the next stretch (other length, fewer
    windows) the same outputs as a fresh one."""
    monkeypatch.setattr(sincnet_windows, "CPU_FRAMES_PER_PIECE", 500)
    sincnet = _sincnet()
    workspace = Workspace()
    with torch.inference_mode():
        sincnet_over_windows(sincnet, _stretch(7, 1600, seed=2), 1600, 7, WINDOW, workspace)
        reused = sincnet_over_windows(sincnet, _stretch(3, 1600, seed=3), 1600, 3, WINDOW,
                                      workspace)
        fresh = sincnet_over_windows(sincnet, _stretch(3, 1600, seed=3), 1600, 3, WINDOW)
    torch.testing.assert_close(reused, fresh, rtol=0, atol=0)


def test_workspace_reuses_only_matching_buffers():
    workspace = Workspace()
    like = torch.zeros(1)
    first = workspace.buffer("a", (2, 3), like)
    assert workspace.buffer("a", (2, 3), like) is first
    assert workspace.buffer("a", (3, 2), like) is not first
    assert workspace.buffer("a", (3, 2), like.double()).dtype == torch.float64


def test_bf16_autocast_gives_float32_outputs_close_to_float32():
    sincnet = _sincnet()
    stretch = _stretch(5, 1600)
    with torch.inference_mode():
        exact = sincnet_over_windows(sincnet, stretch, 1600, 5, WINDOW)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = sincnet_over_windows(sincnet, stretch, 1600, 5, WINDOW)
    assert low.dtype == torch.float32
    # bf16 convolutions (8-bit mantissa) on normalised features of unit scale
    assert 1e-4 < (low - exact).abs().max() < 0.5
    assert (low - exact).abs().mean() < 0.05


def test_refused_with_autograd_or_in_training():
    sincnet = _sincnet()
    stretch = _stretch(3, 1600)
    windows = _windows(stretch, 1600)
    with pytest.raises(RuntimeError, match="inference_mode"):
        with sincnet.shared_first_layer(stretch, 1600):
            sincnet(windows)
    sincnet.train()
    with pytest.raises(RuntimeError, match="eval"):
        with sincnet.shared_first_layer(stretch, 1600):
            pass


def test_windows_are_checked_by_layout_when_views_and_by_value_otherwise(monkeypatch):
    """Views of the stretch pass on their memory layout alone (comparing values would make a
    GPU wait); copies are compared by value; slices every other step are refused."""
    sincnet = _sincnet()
    stretch = _stretch(4, 1600)
    views = stretch.unfold(-1, WINDOW, 1600).transpose(0, 1)
    copies = views.contiguous()
    with torch.inference_mode():
        with sincnet.shared_first_layer(stretch, 1600):
            by_value = sincnet(copies)
        compared = []
        real_equal = torch.equal
        monkeypatch.setattr(torch, "equal", lambda *a: compared.append(1) or real_equal(*a))
        with sincnet.shared_first_layer(stretch, 1600):
            by_layout = sincnet(views)
        assert compared == []
        assert torch.equal(by_layout, by_value)
        with sincnet.shared_first_layer(stretch, 1600):
            sincnet(copies)
        assert compared  # the copies were compared by value
        every_other = stretch.unfold(-1, WINDOW, 800).transpose(0, 1)[:4]  # a view, wrong step
        with pytest.raises(ValueError, match="not slices"):
            with sincnet.shared_first_layer(stretch, 1600):
                sincnet(every_other)
