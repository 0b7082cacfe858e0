"""Two-stream co-attention encoder (ViLBERT-style) that lets audio frames look at video frames.

Audio (batch, audio_frame, audio_dim) and video (batch, video_frame, video_dim) are each
projected to `d_model` with LayerNorm, and a sinusoidal encoding of every frame's time in
seconds is added, so audio at ~59 frames/s and video at 25 or 30 frames/s line up without
resampling either. Then `num_layers` pre-norm layers of: audio attends to video and video
attends to audio (both from the layer's input states), then each stream's feed-forward.

The audio stream's output goes back to the audio features through a zero-initialised
projection as a residual, so at initialisation the encoder is the identity on the audio
features. Missing video frames (`video_mask` False) are removed from every attention; a
sample with no present frame at all gets exactly its input audio features back (never NaN).
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

# initial widths (s) of the narrowest and widest head with learned_locality: 0.04 s is one
# video frame at 25 fps, 5 s a demo chunk (10 s chunks then still have one wide head)
LEARNED_TAUS_S = (0.04, 5.0)


def time_encoding(times_s: torch.Tensor, dim: int, min_period_s: float = 0.05,
                  max_period_s: float = 100.0) -> torch.Tensor:
    """Sinusoidal encoding of times in seconds, (..., ) -> (..., dim).

    Periods are geometric between `min_period_s` (finer than the ~17 ms audio frame step
    needs only a fraction of a turn) and `max_period_s` (far longer than any chunk).
    """
    if dim % 2:
        raise ValueError(f"core/coattention.py: time encoding size must be even, got {dim}")
    periods = torch.logspace(math.log10(min_period_s), math.log10(max_period_s), dim // 2,
                             dtype=torch.float64, device=times_s.device)
    omega = (2 * math.pi / periods).to(torch.float32)
    angles = times_s.to(torch.float32).unsqueeze(-1) * omega
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class CrossAttention(nn.Module):
    """Multi-head attention of queries (B, Q, D) over a context (B, K, D) via SDPA."""

    def __init__(self, d_model: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.query = nn.Linear(d_model, d_model)
        self.key_value = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def heads(self, x: torch.Tensor, context: torch.Tensor
              ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries (B, heads, Q, head_dim), keys and values (B, heads, K, head_dim)."""
        batch, num_queries, d_model = x.shape
        heads, head_dim = self.num_heads, d_model // self.num_heads
        q = self.query(x).view(batch, num_queries, heads, head_dim).transpose(1, 2)
        kv = self.key_value(context).view(batch, context.shape[1], 2, heads, head_dim)
        k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v

    def forward(self, x: torch.Tensor, context: torch.Tensor,
                attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x (B, Q, D), context (B, K, D), attn_mask broadcastable to (B, heads, Q, K)
        (bool: True = attend; float: added to the logits) -> (B, Q, D)."""
        q, k, v = self.heads(x, context)
        if attn_mask is not None and attn_mask.is_floating_point():
            attn_mask = attn_mask.to(q.dtype)  # SDPA wants the query's dtype under autocast
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.out(y.transpose(1, 2).reshape(x.shape))

    def weights(self, x: torch.Tensor, context: torch.Tensor,
                attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The attention weights that forward's SDPA call uses, (B, heads, Q, K); for
        diagnostics (docs/2026-11-26-bench-attention-span.md), not the forward pass."""
        q, k, _ = self.heads(x, context)
        logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if attn_mask is not None and not attn_mask.is_floating_point():
            attn_mask = torch.zeros(attn_mask.shape, device=q.device).masked_fill(
                ~attn_mask, float("-inf"))
        return (logits if attn_mask is None else logits + attn_mask).softmax(dim=-1)


class FeedForward(nn.Sequential):
    """Linear(D, ff_mult * D) > GELU > Linear(ff_mult * D, D)."""

    def __init__(self, d_model: int, ff_mult: int = 4):
        super().__init__(nn.Linear(d_model, ff_mult * d_model), nn.GELU(),
                         nn.Linear(ff_mult * d_model, d_model))


class CoAttentionLayer(nn.Module):
    """One pre-norm two-stream layer: cross-attention both ways, then feed-forward each.

    Dropout applies to each residual branch only; dropout on the attention probabilities
    and inside the feed-forward are left out, as on CPU they cost more than the attention.

    With update_video=False (the encoder's last layer, whose video output nobody reads)
    only the audio stream is updated, which saves about a third of the layer's cost.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.1, ff_mult: int = 4,
                 update_video: bool = True):
        super().__init__()
        self.update_video = update_video
        self.norm_audio = nn.LayerNorm(d_model)
        self.norm_video = nn.LayerNorm(d_model)
        self.audio_to_video = CrossAttention(d_model, num_heads)
        self.norm_audio_ff = nn.LayerNorm(d_model)
        self.ff_audio = FeedForward(d_model, ff_mult)
        if update_video:
            self.video_to_audio = CrossAttention(d_model, num_heads)
            self.norm_video_ff = nn.LayerNorm(d_model)
            self.ff_video = FeedForward(d_model, ff_mult)
        self.drop = nn.Dropout(dropout)

    def forward(self, audio: torch.Tensor, video: torch.Tensor, audio_mask: torch.Tensor,
                video_mask: Optional[torch.Tensor]):
        """audio (B, F, D), video (B, Tv, D); audio_mask (attention of audio over video)
        broadcastable to (B, h, F, Tv), video_mask (video over audio) to (B, h, Tv, F)."""
        a, v = self.norm_audio(audio), self.norm_video(video)
        audio = audio + self.drop(self.audio_to_video(a, v, audio_mask))
        audio = audio + self.drop(self.ff_audio(self.norm_audio_ff(audio)))
        if self.update_video:
            video = video + self.drop(self.video_to_audio(v, a, video_mask))
            video = video + self.drop(self.ff_video(self.norm_video_ff(video)))
        return audio, video


class CoAttentionEncoder(nn.Module):
    """Audio features (B, F, audio_dim) + video (B, Tv, video_dim) -> audio features (B, F,
    audio_dim), equal to the input at initialisation and for samples without any video.

    Args:
        audio_dim, video_dim: feature sizes of the two input streams.
        d_model: width of both streams inside the encoder.
        num_layers, num_heads, dropout, ff_mult: transformer sizes.
        locality_tau_s: if set (seconds), adds -|t_audio - t_video| / tau to every attention
            logit, so a frame prefers frames near its own time. None = off.
        learned_locality: instead, every head h adds -|t_audio - t_video| / tau_h with its
            own learned width tau_h, starting geometrically spaced over LEARNED_TAUS_S (the
            narrowest head looks at about one video frame either side, the widest at the
            whole chunk). Without it attention has to learn to line up times from the
            sinusoidal encodings alone, and after the demo's 150 fine-tuning steps it still
            spread almost uniformly over the 5 s chunk (expected distance of the attended
            video from the frame 1.6-1.8 s, a uniform spread gives 1.67 s;
            docs/2026-11-26-bench-attention-span.md): with centred video that average
            carries next to nothing.
    """

    def __init__(self, audio_dim: int, video_dim: int, d_model: int = 64, num_layers: int = 2,
                 num_heads: int = 4, dropout: float = 0.1, locality_tau_s: Optional[float] = None,
                 ff_mult: int = 4, learned_locality: bool = False):
        super().__init__()
        if d_model % num_heads or d_model % 2:
            raise ValueError(f"core/coattention.py: d_model={d_model} must be even and a "
                             f"multiple of num_heads={num_heads}")
        if num_layers < 1:
            raise ValueError(f"core/coattention.py: num_layers must be >= 1, got {num_layers}")
        if locality_tau_s is not None and locality_tau_s <= 0:
            raise ValueError(f"core/coattention.py: locality_tau_s must be > 0 seconds or None, "
                             f"got {locality_tau_s}")
        if learned_locality and locality_tau_s is not None:
            raise ValueError("core/coattention.py: choose a fixed locality_tau_s or "
                             "learned_locality, not both")
        self.d_model = d_model
        self.num_heads = num_heads
        self.locality_tau_s = locality_tau_s
        self.learned_locality = bool(learned_locality)
        if self.learned_locality:
            low, high = LEARNED_TAUS_S
            taus = torch.logspace(math.log10(low), math.log10(high), num_heads)
            self.log_tau = nn.Parameter(taus.log())  # (heads,), tau_h = exp(log_tau[h]) s
        self.audio_in = nn.Sequential(nn.Linear(audio_dim, d_model), nn.LayerNorm(d_model))
        self.video_in = nn.Sequential(nn.Linear(video_dim, d_model), nn.LayerNorm(d_model))
        self.layers = nn.ModuleList(
            CoAttentionLayer(d_model, num_heads, dropout, ff_mult, update_video=i < num_layers - 1)
            for i in range(num_layers))
        self.norm_out = nn.LayerNorm(d_model)
        self.audio_out = nn.Linear(d_model, audio_dim)
        nn.init.zeros_(self.audio_out.weight)
        nn.init.zeros_(self.audio_out.bias)

    def attention_masks(self, audio_times_s: torch.Tensor, video_times_s: torch.Tensor,
                        key_mask: torch.Tensor):
        """Masks for audio-over-video (B, 1 or heads, F, Tv) and video-over-audio (1, 1 or
        heads, Tv, F) or None.

        key_mask (B, Tv) bool has at least one True per sample, so no softmax row is empty.
        """
        if self.locality_tau_s is None and not self.learned_locality:
            return key_mask[:, None, None, :], None
        distance = (audio_times_s[:, None] - video_times_s[None, :]).abs()
        if self.learned_locality:
            bias = -distance[None] * torch.exp(-self.log_tau)[:, None, None]  # (heads, F, Tv)
        else:
            bias = (-distance / self.locality_tau_s)[None]  # (1, F, Tv)
        audio_mask = bias[None].masked_fill(~key_mask[:, None, None, :], float("-inf"))
        return audio_mask, bias.transpose(1, 2)[None]

    def forward(self, audio: torch.Tensor, video: Optional[torch.Tensor],
                audio_times_s: torch.Tensor, video_times_s: torch.Tensor,
                video_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """audio (B, F, audio_dim); video (B, Tv, video_dim) or None (no video at all);
        audio_times_s (F,) and video_times_s (Tv,) in seconds; video_mask (B, Tv) bool,
        True = frame present (None = all present). Returns (B, F, audio_dim):
        audio + residual(...)."""
        delta = self.residual(audio, video, audio_times_s, video_times_s, video_mask)
        return audio if delta is None else audio + delta

    def residual(self, audio: torch.Tensor, video: Optional[torch.Tensor],
                 audio_times_s: torch.Tensor, video_times_s: torch.Tensor,
                 video_mask: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
        """What the encoder adds to the audio features, (B, F, audio_dim): zero for samples
        without any present video frame; None when there is no video at all (in eval mode
        also when no sample has a present frame). Arguments as forward's."""
        if video is None:
            return None
        batch, num_video = video.shape[:2]
        if video_mask is None:
            video_mask = torch.ones(batch, num_video, dtype=torch.bool, device=video.device)
        has_video = video_mask.any(dim=1)  # (B,)
        if not self.training and not bool(has_video.any()):
            return None  # in training it runs anyway, so every parameter is in every step
        # masked frames are zeroed (their values, even NaN, must not reach anything) and
        # samples without any frame attend to all of their zeros; their output is discarded
        video = video.masked_fill(~video_mask[..., None], 0.0)
        key_mask = video_mask | ~has_video[:, None]
        audio_times_s = audio_times_s.to(audio.device, torch.float32)
        video_times_s = video_times_s.to(audio.device, torch.float32)
        audio_mask, video_over_audio = self.attention_masks(audio_times_s, video_times_s,
                                                            key_mask)
        a = self.audio_in(audio) + time_encoding(audio_times_s, self.d_model)
        v = self.video_in(video) + time_encoding(video_times_s, self.d_model)
        for layer in self.layers:
            a, v = layer(a, v, audio_mask, video_over_audio)
        delta = self.audio_out(self.norm_out(a))
        return torch.where(has_video[:, None, None], delta, torch.zeros_like(delta))
