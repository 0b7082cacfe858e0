"""Sliding windows, per-window video slices and masks, output shapes and time axis."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from core.constants import bf16_supported
from core.powerset import Powerset
from core.receptive_field import frame_times, num_frames
from eval.inference import infer_file, video_slice, window_starts


def test_window_starts_cover_the_file():
    np.testing.assert_array_equal(window_starts(100, 40, 20), [0, 20, 40, 60])
    np.testing.assert_array_equal(window_starts(105, 40, 20), [0, 20, 40, 60, 80])
    np.testing.assert_array_equal(window_starts(10, 40, 20), [0])


def test_video_slice_aligns_and_masks():
    video = np.arange(20, dtype=np.float32)[:, None].repeat(3, 1)
    video[5] = np.nan
    out, mask = video_slice(video, start_s=0.16, num_video_frames=6, fps=25.0)
    # 0.16 s * 25 fps = frame 4: frames 4..9, frame 5 missing
    np.testing.assert_array_equal(out[:, 0], [4, 0, 6, 7, 8, 9])
    np.testing.assert_array_equal(mask, [True, False, True, True, True, True])
    out, mask = video_slice(video, start_s=0.7, num_video_frames=4, fps=25.0)
    np.testing.assert_array_equal(mask, [True, True, False, False])  # frames 18..21


class Recorder(nn.Module):
    """Stand-in fusion model: speaker 0 active where the window's video mask is on."""

    duration_s, video_fps, is_fusion, esize = 2.0, 25.0, True, 3
    powerset = Powerset(3, 2)

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.masks = []

    def num_frames(self, n):
        return num_frames(n)

    def frame_times(self, n):
        return frame_times(n)

    def forward(self, waveforms, video=None, video_mask=None):
        self.masks.append(video_mask.clone())
        F = num_frames(waveforms.shape[-1])
        out = torch.full((len(waveforms), F, 7), -20.0)
        out[:, :, 1] = 0.0
        return out


def test_infer_file_shapes_time_axis_and_video():
    model = Recorder()
    waveform = torch.zeros(1, 16000 * 5)
    video = np.ones((50, 3), dtype=np.float32)  # 2 s of video for a 5 s file
    out = infer_file(model, waveform, video, step_ratio=0.25, batch_size=3)
    assert out.activations.shape == (len(out.chunk_starts_s), num_frames(32000), 3)
    np.testing.assert_allclose(out.chunk_starts_s[:3], [0.0, 0.5, 1.0])
    assert np.all(out.activations[..., 0] == 1) and np.all(out.activations[..., 1:] == 0)
    assert out.center0_s == pytest.approx(495 / 16000)
    assert out.frame_step_s == pytest.approx(270 / 16000, rel=1e-5)
    masks = torch.cat(model.masks)
    assert masks.shape == (len(out.chunk_starts_s), 50)
    assert masks[0].all() and not masks[-1].any()  # last window starts after the video ends
    assert out.duration_s == pytest.approx(5.0)


def test_bad_step_is_refused():
    with pytest.raises(ValueError, match="--step"):
        infer_file(Recorder(), torch.zeros(1, 16000), None, step_ratio=0.0)


@pytest.mark.parametrize("checkpoint,step_ratio,batch_size", [
    ("powerset_small.bin", 0.1, 4), ("multilabel_small.bin", 0.25, 3)])
def test_shared_sinc_equals_per_window(monkeypatch, checkpoint, step_ratio, batch_size):
    """With the speed paths on, each batch's stretch is convolved once, and the outputs are
    the per-window path's (speed paths off) to float32 rounding (odd file length, a last
    window past the end, a partial last batch)."""
    from pathlib import Path

    import core.sincnet
    from core import load_pretrained, speed

    model = load_pretrained(str(Path(__file__).parent / "fixtures" / checkpoint))
    generator = torch.Generator().manual_seed(0)
    num_samples = int(model.duration_s * 16000 * 2.3) + 7
    waveform = 0.1 * torch.randn(1, num_samples, generator=generator) + 0.01
    calls = []
    over_windows = core.sincnet.sincnet_over_windows
    monkeypatch.setattr(core.sincnet, "sincnet_over_windows",
                        lambda *args: calls.append(1) or over_windows(*args))
    with speed.speed_paths(True):
        shared = infer_file(model, waveform, step_ratio=step_ratio, batch_size=batch_size)
    batches = len(calls)
    with speed.speed_paths(False):
        plain = infer_file(model, waveform, step_ratio=step_ratio, batch_size=batch_size)
    assert batches == -(-len(shared.chunk_starts_s) // batch_size) and len(calls) == batches
    assert len(shared.chunk_starts_s) % batch_size != 0
    assert np.abs(shared.probabilities - plain.probabilities).max() <= 1e-5
    np.testing.assert_array_equal(shared.chunk_starts_s, plain.chunk_starts_s)


@pytest.mark.parametrize("gamma,beta,step,silent,tolerance", [
    (1.0, 0.0, 16000, False, 1e-5),   # 1600 frames apart: the pool phase changes per window
    (-0.7, 0.2, 16000, False, 1e-5),  # a negative norm weight reverses the rescale's order
    # 480 frames apart: one phase. A silent first window leaves the next windows' variance
    # small, their rescale large, and float32 rounding grows with it (from the float64
    # scores: the shared path 1.2e-5; the per-window path 5e-6 on an AVX-512 Xeon, 1.1e-5
    # on an AVX2 EPYC)
    (1.3, -0.5, 4800, True, 2e-5),
])
def test_shared_sinc_scores_match_the_model(gamma, beta, step, silent, tolerance):
    """SincNet.shared_first_layer: the model's scores (log-probabilities) per window equal
    the plain forward's to float32 rounding (both measured from the float64 model's), and
    windows that are not slices of the stretch are refused."""
    from pathlib import Path

    from core import load_pretrained

    checkpoint = str(Path(__file__).parent / "fixtures" / "powerset_small.bin")
    model, exact = load_pretrained(checkpoint), load_pretrained(checkpoint).double()
    with torch.no_grad():
        for each in (model, exact):
            each.eval().sincnet.wav_norm1d.weight.fill_(gamma)
            each.sincnet.wav_norm1d.bias.fill_(beta)
    generator = torch.Generator().manual_seed(1)
    window = 160000
    stretch = 0.1 * torch.randn(1, 3 * step + window, generator=generator) - 0.02
    if silent:
        stretch[:, :window] = 0.0
    windows = stretch.unfold(-1, window, step).transpose(0, 1)
    with torch.inference_mode():
        truth = exact(windows.double())
        plain = model(windows.contiguous())
        with model.sincnet.shared_first_layer(stretch, step):
            shared = model(windows)
        assert (plain - truth).abs().max() <= tolerance
        assert (shared - truth).abs().max() <= tolerance
        assert (shared.argmax(-1) == plain.argmax(-1)).float().mean() > 0.999
        with pytest.raises(ValueError, match="not slices"):
            with model.sincnet.shared_first_layer(stretch, 2 * step):
                model(windows)
    with pytest.raises(ValueError, match="multiple of the sinc stride"):
        with model.sincnet.shared_first_layer(stretch, 16005):
            pass


def test_outputs_kept_on_a_gpu_are_gathered_in_order(monkeypatch):
    """On a GPU the batches' outputs are copied to the host several batches at a time; the
    gathered arrays are those of every batch, in order (run here on CPU tensors)."""
    from eval.inference import _Outputs

    monkeypatch.setattr(_Outputs, "GPU_BATCHES", 2)
    outputs = _Outputs(torch.device("cuda"))  # only the device type is read
    batches = [(torch.full((n, 3, 2), float(i)), torch.full((n, 3, 2), -float(i)))
               for i, n in enumerate([3, 3, 3, 1, 2])]
    for hard, soft in batches:
        outputs.add(hard, soft)
    activations, probabilities = outputs.gather()
    np.testing.assert_array_equal(activations, torch.cat([h for h, _ in batches]).numpy())
    np.testing.assert_array_equal(probabilities, torch.cat([s for _, s in batches]).numpy())
    assert activations.dtype == np.float32


@pytest.mark.skipif(not bf16_supported(torch.device("cpu")),
                    reason="this CPU has no oneDNN bf16 kernels: --amp bf16 is refused there "
                           "(tests/test_eval_cli.py checks the refusal)")
def test_bf16_inference_turns_scores_into_probabilities_in_float32():
    """Under bf16 autocast (one context for the whole file) the model runs in bf16, but the
    probabilities are computed from its scores in float32, as batch by batch by hand."""
    from pathlib import Path

    from core import load_pretrained, speed

    model = load_pretrained(str(Path(__file__).parent / "fixtures" / "powerset_small.bin"))
    model.eval()
    window = int(model.duration_s * 16000)
    generator = torch.Generator().manual_seed(2)
    waveform = 0.1 * torch.randn(1, int(window * 2.5), generator=generator)
    with speed.speed_paths(False):  # the per-window path, as by hand below
        out = infer_file(model, waveform, step_ratio=0.5, batch_size=2, amp="bf16")
    starts = window_starts(waveform.shape[-1], window, window // 2)
    padded = torch.nn.functional.pad(waveform, (0, int(starts[-1]) + window - waveform.shape[-1]))
    windows = torch.stack([padded[:, s:s + window] for s in starts])
    by_hand, in_bf16 = [], []
    with torch.inference_mode():
        for first in range(0, len(windows), 2):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                scores = model(windows[first:first + 2])
                in_bf16.append(model.powerset.to_multilabel(scores.float(), soft=True))
            by_hand.append(model.powerset.to_multilabel(scores.float(), soft=True))
    np.testing.assert_array_equal(out.probabilities, torch.cat(by_hand).numpy())
    # the float32 step matters: the same product under autocast rounds otherwise
    assert not np.array_equal(out.probabilities, torch.cat(in_bf16).float().numpy())
