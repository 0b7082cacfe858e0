"""PyanNet, pyannote's segmentation model, in plain PyTorch.

SincNet > LSTM > linear layers (LeakyReLU) > classifier > log-softmax (powerset) or
sigmoid (multi-label). Submodule names match pyannote's checkpoint keys (`sincnet`,
`lstm`, `linear`, `classifier`). waveforms (batch, 1, samples) at 16 kHz ->
scores (batch, frame, class); 589 frames for 10 s.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from core import receptive_field
from core.powerset import Powerset
from core.sincnet import SincNet

SINCNET_DEFAULTS: Dict[str, Any] = {"stride": 10}
LSTM_DEFAULTS: Dict[str, Any] = {
    "hidden_size": 128, "num_layers": 4, "bidirectional": True, "dropout": 0.5}
LINEAR_DEFAULTS: Dict[str, Any] = {"hidden_size": 128, "num_layers": 2}


def _merge(defaults: Dict[str, Any], given: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    merged = dict(defaults)
    merged.update(given or {})
    return merged


def check_waveforms(waveforms: torch.Tensor) -> None:
    """Raise a clear error unless waveforms is (batch, 1, samples)."""
    if not isinstance(waveforms, torch.Tensor):
        raise TypeError(f"waveforms must be a torch.Tensor, got {type(waveforms).__name__}")
    if waveforms.dim() != 3:
        raise ValueError(
            f"waveforms must be (batch, channel=1, samples), got shape {tuple(waveforms.shape)}"
            " (add a batch or channel axis with .unsqueeze)")
    if waveforms.shape[1] != 1:
        raise ValueError(
            f"waveforms must be mono (batch, 1, samples), got {waveforms.shape[1]} channels "
            f"in shape {tuple(waveforms.shape)}; average the channels first")


class PyanNet(nn.Module):
    """pyannote's PyanNet segmentation model.

    num_speakers: K, speakers per chunk; powerset_max: at most this many at once
    (powerset output with C = number of subsets), 0 for a multi-label output (C = K).
    duration_s: the chunk duration the model was trained on (seconds).
    """

    model_id = 0
    model_name = "audio"
    is_fusion = False
    sample_rate = receptive_field.SAMPLE_RATE

    def __init__(self, sincnet: Optional[Dict[str, Any]] = None,
                 lstm: Optional[Dict[str, Any]] = None,
                 linear: Optional[Dict[str, Any]] = None,
                 num_speakers: int = 3, powerset_max: int = 2, duration_s: float = 10.0,
                 lstm_input_size: int = SincNet.CONV_CHANNELS):
        super().__init__()
        self.sincnet_hparams = _merge(SINCNET_DEFAULTS, sincnet)
        self.lstm_hparams = _merge(LSTM_DEFAULTS, lstm)
        self.lstm_hparams.pop("monolithic", None)
        self.linear_hparams = _merge(LINEAR_DEFAULTS, linear)
        self.num_speakers = int(num_speakers)
        self.powerset = Powerset(num_speakers, powerset_max) if powerset_max > 0 else None
        self.num_classes = self.powerset.num_classes if self.powerset else self.num_speakers
        self.duration_s = float(duration_s)

        self.sincnet = SincNet(stride=self.sincnet_hparams["stride"])
        hp = self.lstm_hparams
        self.lstm = nn.LSTM(lstm_input_size, hp["hidden_size"], num_layers=hp["num_layers"],
                            bidirectional=hp["bidirectional"], dropout=hp["dropout"],
                            batch_first=True)
        lstm_out = hp["hidden_size"] * (2 if hp["bidirectional"] else 1)
        linear_hp = self.linear_hparams
        sizes = [lstm_out] + [linear_hp["hidden_size"]] * linear_hp["num_layers"]
        self.linear = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.classifier = nn.Linear(sizes[-1], self.num_classes)
        self.lstm_output_size = lstm_out

    @property
    def hparams(self) -> Dict[str, Any]:
        """Plain dict from which `core.build_model(**hparams)` rebuilds this architecture."""
        return {
            "model": self.model_name,
            "sincnet": copy.deepcopy(self.sincnet_hparams),
            "lstm": copy.deepcopy(self.lstm_hparams),
            "linear": copy.deepcopy(self.linear_hparams),
            "num_speakers": self.num_speakers,
            "powerset_max": self.powerset.max_set_size if self.powerset else 0,
            "duration_s": self.duration_s,
        }

    # --- time axis -----------------------------------------------------------------
    @property
    def stride(self) -> int:
        return int(self.sincnet_hparams["stride"])

    def num_frames(self, num_samples: int) -> int:
        """Output frames for `num_samples` input samples (589 for 160000)."""
        return receptive_field.num_frames(num_samples, self.stride)

    def receptive_field_size(self, num_output_frames: int = 1) -> int:
        """Input samples seen by that many consecutive output frames (991 for one)."""
        return receptive_field.receptive_field_size(num_output_frames, self.stride)

    def receptive_field_center(self, frame: int = 0) -> int:
        """Sample index at the centre of frame `frame` (495 + 270 * frame)."""
        return receptive_field.receptive_field_center(frame, self.stride)

    def frame_times(self, num_frames: int) -> torch.Tensor:
        """Centre time in seconds of every output frame, shape (num_frames,)."""
        return receptive_field.frame_times(num_frames, self.stride, self.sample_rate)

    # --- stages (reused by the fusion models) ---------------------------------------
    def frames(self, waveforms: torch.Tensor) -> torch.Tensor:
        """SincNet features, time-major: (batch, 1, samples) -> (batch, frame, 60)."""
        check_waveforms(waveforms)
        return self.sincnet(waveforms).transpose(1, 2)

    def run_lstm(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, frame, lstm inputs) -> (batch, frame, lstm outputs): one nn.LSTM call,
        zero initial states."""
        outputs, _ = self.lstm(features)
        return outputs

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, frame, lstm outputs) -> (batch, frame, class) log-probs or probabilities."""
        for layer in self.linear:  # in place on the layer's fresh output: no extra tensor
            features = F.leaky_relu_(layer(features))
        logits = self.classifier(features)
        if self.powerset is not None:
            return F.log_softmax(logits.float(), dim=-1)
        return torch.sigmoid(logits.float())

    def forward(self, waveforms: torch.Tensor, video: Optional[torch.Tensor] = None,
                video_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(batch, 1, samples) -> (batch, frame, class). Video arguments are ignored."""
        return self.head(self.run_lstm(self.frames(waveforms)))
