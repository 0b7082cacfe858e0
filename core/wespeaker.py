"""WeSpeaker ResNet34 speaker-embedding model (pyannote/wespeaker-voxceleb-resnet34-LM).

waveforms (batch, 1, samples) at 16 kHz -> Kaldi fbank (80 mel bins, 25 ms / 10 ms,
Hamming, no dither) on int16-scaled samples -> mean normalisation over time ->
ResNet34 (BasicBlock [3, 4, 6, 3], 32 base channels) -> statistics pooling (mean and
std over time, optionally weighted per fbank frame) -> one linear layer -> (batch, 256).

Submodule names follow the checkpoint (`resnet.conv1`, `resnet.layer1.0.bn2`,
`resnet.seg_1`, ...); `WESPEAKER_KEYS` lists them with their shapes and
`load_wespeaker` imports the Hub checkpoint through the safe reader in core/.
"""

from __future__ import annotations

import functools
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.constants import SAMPLE_RATE
from core.hub import resolve_checkpoint
from core.safe_pickle import load_checkpoint_file

WESPEAKER_HUB_ID = "pyannote/wespeaker-voxceleb-resnet34-LM"
FBANK_FRAME_LENGTH_MS = 25.0
FBANK_FRAME_SHIFT_MS = 10.0


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a residual shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def weighted_stats(features: torch.Tensor, weights: Optional[torch.Tensor]) -> torch.Tensor:
    """(batch, dim, frames) -> (batch, 2 * dim): mean and standard deviation over frames.

    Without weights the std is unbiased; with weights (batch, frames) it uses the
    reliability-weights correction `sum(w) - sum(w^2) / sum(w)`.
    """
    if weights is None:
        return torch.cat([features.mean(dim=-1), features.std(dim=-1, correction=1)], dim=-1)
    if weights.shape[-1] != features.shape[-1]:
        weights = F.interpolate(weights[:, None].float(), size=features.shape[-1],
                                mode="nearest")[:, 0]
    w = weights.to(features.dtype).unsqueeze(1)  # (batch, 1, frames)
    total = w.sum(dim=2) + 1e-8
    mean = (features * w).sum(dim=2) / total
    squares = (features - mean.unsqueeze(2)).square()
    var = (squares * w).sum(dim=2) / (total - w.square().sum(dim=2) / total + 1e-8)
    return torch.cat([mean, var.sqrt()], dim=1)


class ResNet34(nn.Module):
    """ResNet34 trunk over (batch, frames, mel) features, pooled to (batch, embed_dim).

    The trunk's activations are channels-last (`memory_format`; faster on CPUs, measured
    in bench/results/2026-12-03-pipeline-rtf-cpu.md), for the same embeddings to float
    rounding (`torch.contiguous_format` gives the plain layout back).
    """

    memory_format = torch.channels_last

    def __init__(self, feat_dim: int = 80, embed_dim: int = 256, channels: int = 32,
                 num_blocks: Tuple[int, ...] = (3, 4, 6, 3)):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        in_planes = channels
        for index, blocks in enumerate(num_blocks):
            planes = channels * 2 ** index
            layers: List[nn.Module] = []
            for block in range(blocks):
                stride = 1 if index == 0 or block > 0 else 2
                layers.append(BasicBlock(in_planes, planes, stride))
                in_planes = planes
            setattr(self, f"layer{index + 1}", nn.Sequential(*layers))
        self.num_layers = len(num_blocks)
        stats_dim = (feat_dim // 8) * channels * 8
        self.seg_1 = nn.Linear(2 * stats_dim, embed_dim)

    def forward(self, features: torch.Tensor,
                weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(batch, frames, mel) [, weights (batch, frames) or (batch, speakers, frames)]
        -> (batch, embed_dim) or (batch, speakers, embed_dim)."""
        x = features.transpose(1, 2).unsqueeze(1)  # (batch, 1, mel, frames)
        x = F.relu(self.bn1(self.conv1(x.contiguous(memory_format=self.memory_format))))
        for index in range(self.num_layers):
            x = getattr(self, f"layer{index + 1}")(x)
        x = x.flatten(1, 2)  # (batch, channels * mel', frames')
        if weights is not None and weights.dim() == 3:
            pooled = [weighted_stats(x, weights[:, k]) for k in range(weights.shape[1])]
            return self.seg_1(torch.stack(pooled, dim=1))
        return self.seg_1(weighted_stats(x, weights))


class WeSpeakerResNet34(nn.Module):
    """waveforms (batch, 1, samples) [, weights (batch, frames)] -> embeddings (batch, 256);
    weights (batch, speakers, frames) give (batch, speakers, 256).

    `weights` may be given at any frame rate (e.g. the segmentation model's 589 frames per
    10 s); they are resampled (nearest) to the pooled feature frames.
    """

    min_num_samples = 400  # one 25 ms fbank frame
    pools_speakers = True  # weights (batch, speakers, frames): one trunk pass per waveform

    def __init__(self, num_mel_bins: int = 80, embed_dim: int = 256):
        super().__init__()
        self.num_mel_bins = num_mel_bins
        self.dimension = embed_dim
        self.sample_rate = SAMPLE_RATE
        self.resnet = ResNet34(feat_dim=num_mel_bins, embed_dim=embed_dim)

    def fbank(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, 1, samples) in [-1, 1] -> (batch, frames, mel), mean-normalised over time."""
        import torchaudio.compliance.kaldi as kaldi

        if waveforms.dim() != 3 or waveforms.shape[1] != 1:
            raise ValueError(
                f"expected waveforms (batch, 1, samples), got {tuple(waveforms.shape)}")
        scaled = waveforms.float() * (1 << 15)
        # vmapped over the batch as pyannote does: the same values as a loop over the
        # waveforms, with the window and mel banks built once
        fbank = functools.partial(
            kaldi.fbank, num_mel_bins=self.num_mel_bins, frame_length=FBANK_FRAME_LENGTH_MS,
            frame_shift=FBANK_FRAME_SHIFT_MS, dither=0.0, sample_frequency=self.sample_rate,
            window_type="hamming", use_energy=False)
        features = torch.vmap(fbank)(scaled)
        return features - features.mean(dim=1, keepdim=True)

    def forward(self, waveforms: torch.Tensor,
                weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.resnet(self.fbank(waveforms), weights=weights)

    def num_frames(self, num_samples: int) -> int:
        """Frames of the pooled ResNet features for `num_samples` samples (as pyannote's
        WeSpeakerResNet34.num_frames): fbank frames halved by each stride-2 stage."""
        frames = fbank_num_frames(num_samples)
        for _ in range(self.resnet.num_layers - 1):
            frames = (frames - 1) // 2 + 1 if frames > 0 else 0
        return frames


def wespeaker_keys(model: WeSpeakerResNet34) -> Dict[str, Tuple[int, ...]]:
    """Checkpoint key -> expected shape, for every parameter and buffer of `model`.

    pyannote's checkpoint uses our names exactly (`resnet.*`); BatchNorm's
    `num_batches_tracked` buffers are optional in a checkpoint.
    """
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def _state_dict_of(checkpoint: object, path: str) -> Dict[str, torch.Tensor]:
    if isinstance(checkpoint, dict) and "state_dict" in checkpoint:
        checkpoint = checkpoint["state_dict"]
    elif isinstance(checkpoint, dict) and "model_state" in checkpoint:
        checkpoint = checkpoint["model_state"]
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path}: no state_dict found in the embedding checkpoint")
    return {str(k): v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}


def load_wespeaker_state(model: WeSpeakerResNet34, state: Dict[str, torch.Tensor],
                         source: str = "checkpoint") -> None:
    """Fill `model` from a pyannote WeSpeaker state_dict; name every unused/unfilled key."""
    expected = wespeaker_keys(model)
    unused = sorted(k for k in state if k not in expected)
    unfilled = sorted(k for k in expected
                      if k not in state and not k.endswith("num_batches_tracked"))
    if unused or unfilled:
        raise ValueError(
            f"{source}: not a WeSpeaker ResNet34 checkpoint; unused keys: {unused[:10]}"
            f"{' ...' if len(unused) > 10 else ''}; unfilled parameters: {unfilled[:10]}"
            f"{' ...' if len(unfilled) > 10 else ''}")
    own = model.state_dict()
    for key, tensor in state.items():
        if tuple(tensor.shape) != expected[key]:
            raise ValueError(f"{source}: {key} has shape {tuple(tensor.shape)}, "
                             f"expected {expected[key]}")
        own[key] = tensor.to(own[key].dtype)
    model.load_state_dict(own)


def load_wespeaker(checkpoint: str = WESPEAKER_HUB_ID, revision: Optional[str] = None,
                   token: Optional[str] = None, map_location: str = "cpu") -> WeSpeakerResNet34:
    """WeSpeaker ResNet34 in eval mode, from a local file/folder or a Hub id."""
    path = resolve_checkpoint(checkpoint, revision=revision, token=token,
                              filenames=("pytorch_model.bin", "model.safetensors"))
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        raw: object = load_file(path, device="cpu")
    else:
        raw = load_checkpoint_file(path, map_location="cpu")
    model = WeSpeakerResNet34()
    load_wespeaker_state(model, _state_dict_of(raw, path), source=path)
    return model.to(map_location).eval()


def fbank_num_frames(num_samples: int) -> int:
    """Number of Kaldi fbank frames (snip_edges) for `num_samples` samples at 16 kHz."""
    length = int(SAMPLE_RATE * FBANK_FRAME_LENGTH_MS / 1000)
    shift = int(SAMPLE_RATE * FBANK_FRAME_SHIFT_MS / 1000)
    return 0 if num_samples < length else 1 + (num_samples - length) // shift


__all__ = ["WeSpeakerResNet34", "load_wespeaker", "load_wespeaker_state", "wespeaker_keys",
           "WESPEAKER_HUB_ID", "fbank_num_frames"]
