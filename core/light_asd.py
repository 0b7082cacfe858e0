"""Light-ASD (Liao et al., CVPR 2023): active-speaker detection on face tracks, in plain PyTorch.

    model = load_light_asd(path)                      # the released state_dict, by key table
    embeddings = model.embed_faces(faces)             # (B, T, 112, 112) grey 0-255 -> (B, T, 128)
    scores = model.speaking_scores(embeddings, mfcc)  # + (B, 4 T, 13) MFCC -> (B, T) log-odds
    scores = model.visual_scores(embeddings)          # without audio  -> (B, T) log-odds

Faces at 25 frames/s, MFCC (core.mfcc) at 100 frames/s, so 4 MFCC frames per video frame.
Visual encoder: three blocks of two parallel branches (spatial k x k conv, then temporal k
conv, k = 3 and 5) summed and mixed by a 1x1 conv, BatchNorm (eps 1e-3) + ReLU after every
conv; the first block halves the image, 3x3/2 max-pools after blocks 1 and 2, then the max
over the remaining 14 x 14 positions: 128 numbers per frame. The audio encoder is the same
on (MFCC coefficient, time) with max-pools /2 along time, then the mean over coefficients.
Back end: audio + visual embeddings summed, a forward GRU, GELU, a GRU over reversed time,
GELU, and a linear 128 -> 2 head (speaking = class 1); a second head reads the visual
embedding alone. Scores are log-odds (logit 1 - logit 0): > 0 means speaking.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from core.weights import sha256_of

# sha256 of the two released checkpoints (Light-ASD repository, weight/; MIT licence)
LIGHT_ASD_SHA256 = {
    "pretrain_AVA_CVPR.model":
        "d44bc3ea7baa8e0946fa3921311714a630ed8b90a1928fab0dbe30d918909317",
    "finetuning_TalkSet.model":
        "efc375833887eefa9d209dc92810e18519b04c3c73ea35a549f2a7f40b7d94d5",
}
DEFAULT_CHECKPOINT = "pretrain_AVA_CVPR.model"
GREY_MEAN, GREY_STD = 0.4161, 0.1688     # of grey face crops scaled to [0, 1]
FACE_SIZE = 112                           # pixels
EMBED_DIM = 128
MFCC_PER_FRAME = 4                        # 100 MFCC frames/s over 25 video frames/s
RECEPTIVE_FRAMES = 6                      # visual encoder: frames of context on each side

# the checkpoint's module names -> ours (prefixes first, then names inside a block)
PREFIXES = {"model.visualEncoder.": "visual.", "model.audioEncoder.": "audio.",
            "model.GRU.gru_forward.": "gru_forward.", "model.GRU.gru_backward.": "gru_backward.",
            "lossAV.FC.": "head_av.", "lossV.FC.": "head_visual."}
BLOCK_NAMES = {"s_3": "branch3.conv_a", "bn_s_3": "branch3.norm_a",
               "m_3": "branch3.conv_a", "bn_m_3": "branch3.norm_a",
               "t_3": "branch3.conv_b", "bn_t_3": "branch3.norm_b",
               "s_5": "branch5.conv_a", "bn_s_5": "branch5.norm_a",
               "m_5": "branch5.conv_a", "bn_m_5": "branch5.norm_a",
               "t_5": "branch5.conv_b", "bn_t_5": "branch5.norm_b",
               "last": "mix", "bn_last": "mix_norm"}


class WeightsMismatch(RuntimeError):
    """A Light-ASD checkpoint that is not one of the released files, or has other keys."""


class _Branch(nn.Module):
    """conv_a -> BN -> ReLU -> conv_b -> BN -> ReLU (a factorised k x k x k convolution)."""

    def __init__(self, conv_a: nn.Module, conv_b: nn.Module, norm: type, channels: int):
        super().__init__()
        self.conv_a, self.norm_a = conv_a, norm(channels, eps=1e-3)
        self.conv_b, self.norm_b = conv_b, norm(channels, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm_a(self.conv_a(x)))
        return F.relu(self.norm_b(self.conv_b(x)))


class VisualBlock(nn.Module):
    """(B, C, T, H, W) -> (B, C', T, H', W'): spatial then temporal branches, k = 3 and 5."""

    def __init__(self, cin: int, cout: int, downsample: bool = False):
        super().__init__()
        stride = (1, 2, 2) if downsample else (1, 1, 1)
        for k in (3, 5):
            spatial = nn.Conv3d(cin, cout, (1, k, k), stride=stride, padding=(0, k // 2, k // 2),
                                bias=False)
            temporal = nn.Conv3d(cout, cout, (k, 1, 1), padding=(k // 2, 0, 0), bias=False)
            setattr(self, f"branch{k}", _Branch(spatial, temporal, nn.BatchNorm3d, cout))
        self.mix = nn.Conv3d(cout, cout, 1, bias=False)
        self.mix_norm = nn.BatchNorm3d(cout, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.mix_norm(self.mix(self.branch3(x) + self.branch5(x))))


class AudioBlock(nn.Module):
    """(B, C, M, T) -> (B, C', M, T): branches along the MFCC axis M, then along time T."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        for k in (3, 5):
            along_m = nn.Conv2d(cin, cout, (k, 1), padding=(k // 2, 0), bias=False)
            along_t = nn.Conv2d(cout, cout, (1, k), padding=(0, k // 2), bias=False)
            setattr(self, f"branch{k}", _Branch(along_m, along_t, nn.BatchNorm2d, cout))
        self.mix = nn.Conv2d(cout, cout, 1, bias=False)
        self.mix_norm = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.mix_norm(self.mix(self.branch3(x) + self.branch5(x))))


class VisualEncoder(nn.Module):
    """(B, T, 112, 112) normalised grey faces -> (B, T, 128).

    In eval mode the blocks run as 2-D convolutions with BatchNorm folded into them (spatial
    convs on (B T, C, H, W), temporal ones on (B, C, T, H W)): the same numbers as the 3-D
    modules (to float rounding) in about two thirds of the time on a CPU.
    """

    def __init__(self):
        super().__init__()
        self.block1 = VisualBlock(1, 32, downsample=True)
        self.block2 = VisualBlock(32, 64)
        self.block3 = VisualBlock(64, 128)

    @staticmethod
    def _pool(x: torch.Tensor) -> torch.Tensor:  # 3x3 stride-2 max-pool of every frame
        return F.max_pool3d(x, (1, 3, 3), (1, 2, 2), (0, 1, 1))

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self._folded_forward(faces)
        x = self._pool(self.block1(faces[:, None]))
        x = self._pool(self.block2(x))
        x = self.block3(x)                                   # (B, 128, T, 14, 14)
        return x.amax(dim=(3, 4)).transpose(1, 2)

    def _folded_forward(self, faces: torch.Tensor) -> torch.Tensor:
        batch, frames = faces.shape[:2]
        x = faces.reshape(batch * frames, 1, *faces.shape[2:])
        x = F.max_pool2d(_folded_block(self.block1, x, batch, 2), 3, 2, 1)
        x = F.max_pool2d(_folded_block(self.block2, x, batch, 1), 3, 2, 1)
        x = _folded_block(self.block3, x, batch, 1)
        return x.amax(dim=(2, 3)).view(batch, frames, -1)


def _fold(conv: nn.Module, norm: nn.Module):
    """(weight, bias) of conv followed by eval-mode BatchNorm as one convolution."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    weight = conv.weight * scale.view(-1, *[1] * (conv.weight.dim() - 1))
    return weight, norm.bias - norm.running_mean * scale


def _folded_block(block: VisualBlock, x: torch.Tensor, batch: int, stride: int) -> torch.Tensor:
    """VisualBlock on (B T, C, H, W) frames with folded BatchNorm -> (B T, C', H', W')."""
    total = 0
    for branch in (block.branch3, block.branch5):
        weight, bias = _fold(branch.conv_a, branch.norm_a)
        y = F.relu(F.conv2d(x, weight[:, :, 0], bias, stride=stride,
                            padding=weight.shape[-1] // 2))
        count, channels, height, width = y.shape
        y = y.view(batch, count // batch, channels, height * width).transpose(1, 2)
        weight, bias = _fold(branch.conv_b, branch.norm_b)    # (C, C, k, 1, 1) along time
        total = total + F.relu(F.conv2d(y, weight[..., 0], bias,
                                        padding=(weight.shape[2] // 2, 0)))
    weight, bias = _fold(block.mix, block.mix_norm)
    y = F.relu(F.conv2d(total, weight[..., 0], bias))           # (B, C, T, H W)
    return y.transpose(1, 2).reshape(count, channels, height, width)


class AudioEncoder(nn.Module):
    """(B, 4 T, 13) MFCC -> (B, T, 128)."""

    def __init__(self):
        super().__init__()
        self.block1 = AudioBlock(1, 32)
        self.block2 = AudioBlock(32, 64)
        self.block3 = AudioBlock(64, 128)

    @staticmethod
    def _pool(x: torch.Tensor) -> torch.Tensor:  # halves time
        return F.max_pool2d(x, (1, 3), (1, 2), (0, 1))

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        x = self._pool(self.block1(mfcc.transpose(1, 2)[:, None]))
        x = self._pool(self.block2(x))
        return self.block3(x).mean(dim=2).transpose(1, 2)


class LightASD(nn.Module):
    """Light-ASD's encoders, bidirectional GRU back end and its two speaking heads."""

    def __init__(self):
        super().__init__()
        self.visual = VisualEncoder()
        self.audio = AudioEncoder()
        self.gru_forward = nn.GRU(EMBED_DIM, EMBED_DIM, batch_first=True)
        self.gru_backward = nn.GRU(EMBED_DIM, EMBED_DIM, batch_first=True)
        self.head_av = nn.Linear(EMBED_DIM, 2)
        self.head_visual = nn.Linear(EMBED_DIM, 2)

    def embed_faces(self, faces: torch.Tensor) -> torch.Tensor:
        """(B, T, 112, 112) grey faces, 0-255 (uint8 or float) -> (B, T, 128) float32."""
        x = (faces.to(torch.float32) / 255.0 - GREY_MEAN) / GREY_STD
        return self.visual(x)

    def embed_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """(B, 4 T, 13) MFCC -> (B, T, 128)."""
        return self.audio(mfcc)

    def speaking_scores(self, visual: torch.Tensor, mfcc: torch.Tensor) -> torch.Tensor:
        """Audio-visual log-odds of speaking, (B, T), from face embeddings (B, T, 128) and
        the MFCC of the same span (B, >= 4 T, 13)."""
        audio = self.embed_audio(mfcc)[:, :visual.shape[1]]
        if audio.shape[1] < visual.shape[1]:
            raise ValueError(f"MFCC covers {audio.shape[1]} video frames, faces {visual.shape[1]}")
        x, _ = self.gru_forward(audio + visual)
        x, _ = self.gru_backward(F.gelu(x).flip(1))
        return _log_odds(self.head_av(F.gelu(x.flip(1))))

    def visual_scores(self, visual: torch.Tensor) -> torch.Tensor:
        """Visual-only log-odds of speaking, (B, T), from face embeddings (B, T, 128)."""
        return _log_odds(self.head_visual(visual))


def _log_odds(logits: torch.Tensor) -> torch.Tensor:
    return logits[..., 1] - logits[..., 0]


def map_keys(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The released checkpoint's keys renamed to `LightASD`'s (PREFIXES, BLOCK_NAMES)."""
    mapped = {}
    for key, value in state.items():
        prefix = next((p for p in PREFIXES if key.startswith(p)), None)
        if prefix is None:
            raise WeightsMismatch(f"Light-ASD checkpoint: unexpected key {key!r}")
        rest = key[len(prefix):]
        parts = rest.split(".")
        if prefix in ("model.visualEncoder.", "model.audioEncoder.") and len(parts) == 3:
            if parts[1] not in BLOCK_NAMES:
                raise WeightsMismatch(f"Light-ASD checkpoint: unexpected key {key!r}")
            rest = f"{parts[0]}.{BLOCK_NAMES[parts[1]]}.{parts[2]}"
        mapped[PREFIXES[prefix] + rest] = value
    return mapped


def default_weights(repo_root: Optional[Path] = None) -> Path:
    """Where Light-ASD's checkpoint is looked for: $AVDIAR_WEIGHTS (or ~/.cache/avdiar/weights)
    /light-asd/, then ../shared/real/light-asd/ beside the repository. FileNotFoundError
    naming both when neither holds it."""
    from core.weights import weights_dir

    weights = weights_dir()
    root = repo_root or Path(__file__).resolve().parents[1]
    candidates = [weights / "light-asd" / DEFAULT_CHECKPOINT,
                  root.parent / "shared" / "real" / "light-asd" / DEFAULT_CHECKPOINT]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"Light-ASD weights not found in {candidates[0]} nor {candidates[1]}; put "
        f"{DEFAULT_CHECKPOINT} (Light-ASD repository, weight/) in the first or pass --asd-weights")


def load_light_asd(path: Union[str, Path, None] = None, *, check_sha256: bool = True,
                   device: Union[str, torch.device] = "cpu") -> LightASD:
    """LightASD in eval mode with a released checkpoint's weights (default: `default_weights()`).

    The file must be one of LIGHT_ASD_SHA256 (check_sha256=False accepts another training of
    the same architecture). Every key is used and every parameter filled, or WeightsMismatch
    names the difference.
    """
    path = Path(path) if path is not None else default_weights()
    if not path.is_file():
        raise FileNotFoundError(f"Light-ASD weights {path}: no such file")
    if check_sha256 and sha256_of(path) not in LIGHT_ASD_SHA256.values():
        raise WeightsMismatch(f"{path}: sha256 is not that of a released Light-ASD checkpoint "
                              f"({', '.join(LIGHT_ASD_SHA256)})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsMismatch(f"{path}: not a torch state_dict ({error})") from error
    model = LightASD()
    mapped = {k: v for k, v in map_keys(state).items() if not k.endswith("num_batches_tracked")}
    own = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    unused, unfilled = sorted(set(mapped) - set(own)), sorted(set(own) - set(mapped))
    wrong = [k for k in set(mapped) & set(own) if mapped[k].shape != own[k].shape]
    if unused or unfilled or wrong:
        raise WeightsMismatch(f"{path}: unused keys {unused}, unfilled parameters {unfilled}, "
                              f"wrong shapes {sorted(wrong)}")
    model.load_state_dict(mapped, strict=False)
    return model.eval().to(device)
