"""MFCC at 100 frames/s: the audio features Light-ASD was trained on.

    features = mfcc(waveform)        # waveform (samples,) 16 kHz, in [-1, 1] -> (frames, 13)

The recipe of python_speech_features.mfcc with its defaults (what Light-ASD's training and
demo scripts call on 16-bit PCM): the signal on the int16 scale, pre-emphasis 0.97, 25 ms
frames every 10 ms without a window (the last frame zero-padded), power spectrum
|rfft_512|^2 / 512, 26 triangular mel filters from 0 Hz to 8 kHz on floor-rounded FFT
bins, log, orthonormal DCT-II (13 coefficients), sine lifter 22, and coefficient 0
replaced by the log frame energy. Frame i covers samples [160 i, 160 i + 400).
"""

from __future__ import annotations

import math

import torch

from core.constants import SAMPLE_RATE

FRAME_LENGTH = 400     # samples (25 ms)
FRAME_STEP = 160       # samples (10 ms)
NFFT = 512
NUM_FILTERS = 26
NUM_CEPSTRA = 13
PREEMPHASIS = 0.97
LIFTER = 22
INT16_SCALE = 32768.0
_EPS = torch.finfo(torch.float64).eps


def _hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filters(num_filters: int = NUM_FILTERS, nfft: int = NFFT,
                sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """(num_filters, nfft // 2 + 1) float64 triangles on integer FFT bins, 0 Hz to Nyquist."""
    edges_mel = torch.linspace(0.0, float(_hz_to_mel(torch.tensor(sample_rate / 2.0))),
                               num_filters + 2, dtype=torch.float64)
    bins = torch.floor((nfft + 1) * _mel_to_hz(edges_mel) / sample_rate)
    index = torch.arange(nfft // 2 + 1, dtype=torch.float64)
    lo, mid, hi = bins[:-2, None], bins[1:-1, None], bins[2:, None]
    rising = (index - lo) / (mid - lo)
    falling = (hi - index) / (hi - mid)
    return torch.where((index >= lo) & (index < mid), rising,
                       torch.where((index >= mid) & (index < hi), falling, 0.0))


def _dct_matrix(size: int, keep: int) -> torch.Tensor:
    """(size, keep) orthonormal DCT-II basis: x (.., size) @ it = the first `keep` coefficients."""
    n = torch.arange(size, dtype=torch.float64)
    k = torch.arange(keep, dtype=torch.float64)
    basis = torch.cos(math.pi * (n[:, None] + 0.5) * k[None, :] / size) * math.sqrt(2.0 / size)
    basis[:, 0] /= math.sqrt(2.0)
    return basis


def num_frames(num_samples: int) -> int:
    """MFCC frames of a signal of `num_samples` (at least 1)."""
    if num_samples <= FRAME_LENGTH:
        return 1
    return 1 + math.ceil((num_samples - FRAME_LENGTH) / FRAME_STEP)


def mfcc(waveform: torch.Tensor) -> torch.Tensor:
    """(frames, 13) float32 MFCCs of a 16 kHz mono `waveform` (samples,) in [-1, 1]."""
    if waveform.dim() != 1:
        raise ValueError(f"mfcc expects a mono waveform (samples,), got {tuple(waveform.shape)}")
    signal = waveform.to(torch.float64) * INT16_SCALE
    if len(signal) == 0:
        signal = torch.zeros(1, dtype=torch.float64)
    emphasised = torch.cat([signal[:1], signal[1:] - PREEMPHASIS * signal[:-1]])
    count = num_frames(len(emphasised))
    padded = torch.zeros((count - 1) * FRAME_STEP + FRAME_LENGTH, dtype=torch.float64)
    padded[:len(emphasised)] = emphasised
    frames = padded.unfold(0, FRAME_LENGTH, FRAME_STEP)                 # (frames, 400)
    power = torch.fft.rfft(frames, n=NFFT).abs().square() / NFFT        # (frames, 257)
    energy = power.sum(dim=1)
    energy = torch.where(energy == 0, _EPS, energy)
    banks = power @ mel_filters().T
    banks = torch.where(banks == 0, _EPS, banks)
    cepstra = torch.log(banks) @ _dct_matrix(NUM_FILTERS, NUM_CEPSTRA)
    lift = 1.0 + (LIFTER / 2.0) * torch.sin(
        math.pi * torch.arange(NUM_CEPSTRA, dtype=torch.float64) / LIFTER)
    cepstra = cepstra * lift
    cepstra[:, 0] = torch.log(energy)
    return cepstra.to(torch.float32)
