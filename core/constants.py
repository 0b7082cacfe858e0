"""Settings shared by every layer: the audio sample rate and the mixed-precision modes.

    SAMPLE_RATE          16000 Hz: the input rate of every model (SincNet, WeSpeaker), of
                         the audio readers and of the synthetic database
    AMP_MODES            training's --amp: "off" (float32), "bf16" (autocast), "fp16"
                         (autocast with a GradScaler)
    INFERENCE_AMP_MODES  eval's --amp: the same plus "auto" (bf16, or fp16 where the GPU
                         lacks bf16, on CUDA; float32 on the CPU)
"""

from __future__ import annotations

SAMPLE_RATE = 16000
AMP_MODES = ("off", "bf16", "fp16")
INFERENCE_AMP_MODES = ("auto",) + AMP_MODES
