"""Audio-visual fusion models 6 (late), 7 (early) and 8 (hybrid), built on PyanNet.

Each is a PyanNet subclass, so its audio path keeps pyannote's key names (`sincnet.*`,
`lstm.*`, `linear.*`, `classifier.*`) and loads the same pretrained weights; everything
else is new (part "fusion"). Video enters only through zero-initialised weights, so at
initialisation each model computes exactly what the audio model computes, for any video.

    6 late:   SincNet > LSTM > co-attention(LSTM outputs, video) > linear > classifier
    7 early:  SincNet > co-attention(SincNet frames, video) > LSTM > linear > classifier
    8 hybrid: [Linear+Dropout(SincNet frames) (identity at init),
               Linear+Dropout(video at each audio frame's time)] > LSTM (video columns of
              its first layer zero at init) > co-attention > linear > classifier

forward(waveforms (B, 1, samples), video (B, Tv, esize) or None, video_mask (B, Tv) bool or
None, True = frame present) -> (B, frame, class). Video frame j is at j / video_fps seconds
from the chunk start; audio frame i at its receptive-field centre.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from core.backbone import PyanNet
from core.coattention import CoAttentionEncoder
from core.sincnet import SincNet


def center_video(video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Subtract each chunk's mean embedding over its present frames; missing frames -> 0.

    video (B, Tv, E), mask (B, Tv) bool -> (B, Tv, E). What stays constant over a chunk
    (whose face it is, the camera) goes; what changes (the mouth, faces coming and going)
    stays. Without it the fusion models fit the training speakers' faces: a video-only
    probe on the synthetic database reached 42 % validation DER (confusion 15 %) with the
    raw embeddings and 30 % (confusion 6 %) with centred ones
    (docs/2026-11-26-bench-video-probe.md).
    """
    present = mask[..., None].to(video.dtype)
    video = video.masked_fill(~mask[..., None], 0.0)
    mean = video.sum(dim=1, keepdim=True) / present.sum(dim=1, keepdim=True).clamp(min=1.0)
    return (video - mean) * present


class FusionModel(PyanNet):
    """Common part of the fusion models: fusion hparams, video checks, modality dropout.

    Co-attention defaults are d_model 64, feed-forward 4 x d_model, 2 layers, 4 heads:
    chosen for their cost against the audio model (python -m bench.models; figures in
    bench/results/2026-11-25-fusion-models-cost.md). Pass d_model=256 for a wider encoder.
    """

    is_fusion = True  # takes video; the subclasses also say where it enters (fusion_stage)

    def __init__(self, *, esize: int, video_fps: float = 25.0, d_model: int = 64,
                 num_layers: int = 2, num_heads: int = 4, dropout: float = 0.1,
                 locality_tau_s: Optional[float] = None, modality_dropout: float = 0.1,
                 ff_mult: int = 4, video_centering: bool = True,
                 learned_locality: Optional[bool] = None,
                 lstm_input_size: Optional[int] = None, **backbone: Any):
        if esize is None or int(esize) <= 0:
            raise ValueError(f"core/fusion.py: model {self.model_name!r} needs esize, the size "
                             f"of one video embedding (e.g. 384 or 1024), got {esize!r}")
        if not video_fps or float(video_fps) <= 0:
            raise ValueError(f"core/fusion.py: video_fps must be > 0, got {video_fps!r}")
        if not 0.0 <= float(modality_dropout) < 1.0:
            raise ValueError(f"core/fusion.py: modality_dropout must be in [0, 1), "
                             f"got {modality_dropout!r}")
        if lstm_input_size is not None:
            backbone["lstm_input_size"] = lstm_input_size
        super().__init__(**backbone)
        self.esize = int(esize)
        self.video_fps = float(video_fps)
        self.modality_dropout = float(modality_dropout)
        self.video_centering = bool(video_centering)
        self.fusion_hparams: Dict[str, Any] = {
            "d_model": int(d_model), "num_layers": int(num_layers), "num_heads": int(num_heads),
            "dropout": float(dropout), "ff_mult": int(ff_mult),
            "locality_tau_s": None if locality_tau_s is None else float(locality_tau_s),
            # None: on unless a fixed locality_tau_s is given
            "learned_locality": (locality_tau_s is None if learned_locality is None
                                 else bool(learned_locality))}

    def new_coattention(self, audio_dim: int) -> CoAttentionEncoder:
        return CoAttentionEncoder(audio_dim, self.esize, **self.fusion_hparams)

    @property
    def hparams(self) -> Dict[str, Any]:
        """Plain dict from which `core.build_model(**hparams)` rebuilds this architecture."""
        return {**super().hparams, "esize": self.esize, "video_fps": self.video_fps,
                "modality_dropout": self.modality_dropout,
                "video_centering": self.video_centering, **self.fusion_hparams}

    def video_times(self, num_video_frames: int) -> torch.Tensor:
        """Time in seconds of every video frame from the chunk start, (num_video_frames,)."""
        return torch.arange(num_video_frames, dtype=torch.float32) / self.video_fps

    def prepare_video(self, video: Optional[torch.Tensor], video_mask: Optional[torch.Tensor],
                      batch: int) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """Check shapes, build the mask if missing, apply modality dropout in training.

        Returns (video (B, Tv, esize), mask (B, Tv) bool) or (None, None) for no video.
        """
        if video is None:
            if not self.training:
                return None, None
            # training without video: one missing frame, so that every parameter still
            # takes part in the step (DistributedDataParallel needs that) and adds zero
            video = torch.zeros(batch, 1, self.esize, device=self.classifier.weight.device)
            return video, torch.zeros(batch, 1, dtype=torch.bool, device=video.device)
        if video.dim() != 3 or video.shape[0] != batch:
            raise ValueError(f"core/fusion.py: video must be (batch={batch}, frames, "
                             f"esize={self.esize}), got shape {tuple(video.shape)}")
        if video.shape[-1] != self.esize:
            raise ValueError(f"core/fusion.py: video embeddings have size {video.shape[-1]} but "
                             f"this model was built with esize={self.esize}")
        if video_mask is None:
            video_mask = torch.ones(video.shape[:2], dtype=torch.bool, device=video.device)
        elif tuple(video_mask.shape) != tuple(video.shape[:2]):
            raise ValueError(f"core/fusion.py: video_mask must be (batch, frames) = "
                             f"{tuple(video.shape[:2])}, got {tuple(video_mask.shape)}")
        video_mask = video_mask.to(device=video.device, dtype=torch.bool)
        if self.training and self.modality_dropout > 0:
            keep = torch.rand(batch, 1, device=video.device) >= self.modality_dropout
            video_mask = video_mask & keep
        if self.video_centering:
            video = center_video(video, video_mask)
        return video, video_mask

    def coattend(self, encoder: CoAttentionEncoder, audio: torch.Tensor,
                 video: Optional[torch.Tensor], video_mask: Optional[torch.Tensor]):
        """Run `encoder` on audio features (B, F, D) at this model's frame times."""
        residual = self.coattention_residual(encoder, audio, video, video_mask)
        return audio if residual is None else audio + residual

    def coattention_residual(self, encoder: CoAttentionEncoder, audio: torch.Tensor,
                             video: Optional[torch.Tensor],
                             video_mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """What `encoder` adds to audio features (B, F, D), or None (no video)."""
        if video is None:
            return None
        return encoder.residual(audio, video, self.frame_times(audio.shape[1]),
                                self.video_times(video.shape[1]), video_mask)


class LateFusion(FusionModel):
    """Model 6: co-attention between the LSTM outputs and the video."""

    model_id = 6
    model_name = "late"
    fusion_stage = "late (after LSTM)"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.coattention = self.new_coattention(self.lstm_output_size)

    def forward(self, waveforms: torch.Tensor, video: Optional[torch.Tensor] = None,
                video_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, 1, samples), (B, Tv, esize), (B, Tv) -> (B, frame, class)."""
        video, video_mask = self.prepare_video(video, video_mask, waveforms.shape[0])
        features = self.run_lstm(self.frames(waveforms))
        return self.head(self.coattend(self.coattention, features, video, video_mask))


class EarlyFusion(FusionModel):
    """Model 7: co-attention between the SincNet frames and the video, before the LSTM.

    The co-attention's residual goes in before SincNet's last LeakyReLU: the frames are
    mapped back through it (LeakyReLU is invertible), the residual is added, and the
    LeakyReLU applied again. So the LSTM only ever sees values in the range SincNet gives
    it (>= about -0.05 with segmentation-3.0). Added after the LeakyReLU, the residual
    drove the pretrained LSTM into inputs it has never seen (strongly negative), where its
    gradient with respect to its input grew to 1e8-1e25 within three fine-tuning steps
    and training stopped on non-finite losses (docs/2026-12-03-model-7-divergence.md).
    With zero residual (initialisation, no video) the output is the audio model's.
    Checkpoints written before this change have no residual_before_activation in their
    hparams and are rebuilt with it False (core.models.checkpoint_hparams).
    """

    model_id = 7
    model_name = "early"
    fusion_stage = "early (before LSTM)"

    def __init__(self, *, residual_before_activation: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        self.coattention = self.new_coattention(self.lstm.input_size)
        # False: the residual added after the LeakyReLU, as model 7 did before (checkpoints
        # from then compute what they computed)
        self.residual_before_activation = bool(residual_before_activation)

    @property
    def hparams(self) -> Dict[str, Any]:
        return {**super().hparams, "residual_before_activation": self.residual_before_activation}

    def forward(self, waveforms: torch.Tensor, video: Optional[torch.Tensor] = None,
                video_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, 1, samples), (B, Tv, esize), (B, Tv) -> (B, frame, class)."""
        video, video_mask = self.prepare_video(video, video_mask, waveforms.shape[0])
        frames = self.frames(waveforms)
        residual = self.coattention_residual(self.coattention, frames, video, video_mask)
        if residual is None:
            features = frames
        elif self.residual_before_activation:
            features = F.leaky_relu(inverse_leaky_relu(frames) + residual, SincNet.LEAKY_SLOPE)
        else:
            features = frames + residual
        return self.head(self.run_lstm(features))


def inverse_leaky_relu(x: torch.Tensor, slope: float = SincNet.LEAKY_SLOPE) -> torch.Tensor:
    """The input that F.leaky_relu(., slope) maps to x, same shape."""
    return torch.where(x >= 0, x, x / slope)


class HybridFusion(FusionModel):
    """Model 8: time-aligned video into the LSTM, then co-attention after the LSTM.

    Early path: every video frame goes through Linear(esize, video_hidden) + Dropout and is
    multiplied by its presence, so a missing frame feeds exactly zero and a present one
    W v + b (the bias acts as a presence signal); every audio frame then gets the projected
    video frame nearest its centre time (round(t * fps), clamped to the chunk's frames).
    SincNet frames go through Linear(60, 60) + Dropout, initialised to the identity.
    The LSTM's first layer takes 60 + video_hidden inputs; its video columns start at zero.
    """

    model_id = 8
    model_name = "hybrid"
    fusion_stage = "hybrid (both)"

    def __init__(self, *, video_hidden: int = 64, **kwargs: Any):
        audio_inputs = SincNet.CONV_CHANNELS
        super().__init__(lstm_input_size=audio_inputs + int(video_hidden), **kwargs)
        self.video_hidden = int(video_hidden)
        self.lstm_audio_inputs = audio_inputs
        dropout = self.fusion_hparams["dropout"]
        self.audio_projection = nn.Linear(audio_inputs, audio_inputs)
        self.audio_dropout = nn.Dropout(dropout)
        self.video_projection = nn.Linear(self.esize, self.video_hidden)
        self.video_dropout = nn.Dropout(dropout)
        self.coattention = self.new_coattention(self.lstm_output_size)
        with torch.no_grad():
            self.audio_projection.weight.copy_(torch.eye(audio_inputs))
            self.audio_projection.bias.zero_()
            for name in ("weight_ih_l0", "weight_ih_l0_reverse"):
                if hasattr(self.lstm, name):
                    getattr(self.lstm, name)[:, audio_inputs:] = 0.0

    @property
    def hparams(self) -> Dict[str, Any]:
        return {**super().hparams, "video_hidden": self.video_hidden}

    def aligned_video(self, video: torch.Tensor, video_mask: torch.Tensor,
                      num_frames: int) -> torch.Tensor:
        """Projected video at every audio frame's time: (B, Tv, E), (B, Tv) -> (B, F, H).

        Frames are projected before they are repeated (Tv < F, same result, less work).
        """
        video = video.masked_fill(~video_mask[..., None], 0.0)
        projected = self.video_dropout(self.video_projection(video))
        projected = projected * video_mask[..., None].to(projected.dtype)
        times = self.frame_times(num_frames).to(video.device)
        index = torch.round(times * self.video_fps).long().clamp_(0, video.shape[1] - 1)
        return projected[:, index]

    def forward(self, waveforms: torch.Tensor, video: Optional[torch.Tensor] = None,
                video_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, 1, samples), (B, Tv, esize), (B, Tv) -> (B, frame, class)."""
        video, video_mask = self.prepare_video(video, video_mask, waveforms.shape[0])
        audio = self.audio_dropout(self.audio_projection(self.frames(waveforms)))
        batch, num_frames = audio.shape[:2]
        if video is None:
            aligned = audio.new_zeros(batch, num_frames, self.video_hidden)
        else:
            aligned = self.aligned_video(video, video_mask, num_frames)
        features = self.run_lstm(torch.cat([audio, aligned], dim=-1))
        return self.head(self.coattend(self.coattention, features, video, video_mask))
