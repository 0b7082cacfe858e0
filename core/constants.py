"""Settings shared by every layer: the audio sample rate and the mixed-precision modes.

    SAMPLE_RATE          16000 Hz: the input rate of every model (SincNet, WeSpeaker), of
                         the audio readers and of the synthetic database
    AMP_MODES            training's --amp: "off" (float32), "bf16" (autocast), "fp16"
                         (autocast with a GradScaler)
    INFERENCE_AMP_MODES  eval's --amp: the same plus "auto" (bf16, or fp16 where the GPU
                         lacks bf16, on CUDA; float32 on the CPU)
"""

from __future__ import annotations

import torch

SAMPLE_RATE = 16000
AMP_MODES = ("off", "bf16", "fp16")
INFERENCE_AMP_MODES = ("auto",) + AMP_MODES


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast can run the models on `device`: a CUDA GPU with bf16, or a CPU
    whose oneDNN has bf16 kernels (without them its LSTM refuses bf16 inputs)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return True
