"""A multi-layer nn.LSTM in training mode, one layer at a time, with cheaper dropout masks.

nn.LSTM applies dropout between its layers with `bernoulli_`, which on a CPU draws its
random numbers far more slowly than `torch.rand` (measured on a 2-core Xeon, 2 threads, a
(32, 589, 256) mask: 82 ms against 20 ms; PyanNet draws three per step). Here each layer
is the same library call nn.LSTM makes (`torch._VF.lstm`, one layer, the module's own
weights) and the mask between layers is `rand < keep` (float32 uniforms): the same
distribution, the same outputs in eval mode or without dropout, different random draws.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
import torch.nn as nn


def dropout_masks(lstm: nn.LSTM, inputs: torch.Tensor) -> List[Optional[torch.Tensor]]:
    """The keep masks applied before layers 1 .. num_layers - 1: bool tensors shaped like a
    layer's outputs ((batch, frame, hidden * directions) when batch_first), or Nones in eval
    mode or without dropout. Drawn from the global generator, float32 uniforms < 1 - p."""
    keep = 1.0 - float(lstm.dropout)
    if not lstm.training or keep >= 1.0:
        return [None] * (lstm.num_layers - 1)
    shape = inputs.shape[:-1] + (lstm.hidden_size * (2 if lstm.bidirectional else 1),)
    return [torch.rand(shape, device=inputs.device) < keep for _ in range(lstm.num_layers - 1)]


def run_layers(lstm: nn.LSTM, inputs: torch.Tensor, weights: Sequence[torch.Tensor],
               masks: Sequence[Optional[torch.Tensor]]) -> torch.Tensor:
    """The LSTM's last-layer outputs for `inputs`, computed with `weights` (nn.LSTM's flat
    order, all layers) and the keep `masks` of dropout_masks (or slices of them), zero
    initial states. Without masks, one library call as nn.LSTM makes it. Checks the inputs'
    shape as nn.LSTM does (the library call itself does not)."""
    lstm.check_input(inputs, None)
    directions = 2 if lstm.bidirectional else 1
    batch = inputs.shape[0 if lstm.batch_first else 1]
    zeros = inputs.new_zeros(lstm.num_layers * directions, batch, lstm.hidden_size)
    if all(mask is None for mask in masks):
        return torch._VF.lstm(inputs, (zeros, zeros), list(weights), lstm.bias, lstm.num_layers,
                              0.0, lstm.training, lstm.bidirectional, lstm.batch_first)[0]
    per_layer = len(weights) // lstm.num_layers
    scale = 1.0 / (1.0 - float(lstm.dropout))
    outputs = inputs
    for layer in range(lstm.num_layers):
        if layer > 0 and masks[layer - 1] is not None:
            outputs = outputs * masks[layer - 1].to(outputs.dtype).mul_(scale)
        state = zeros[layer * directions:(layer + 1) * directions]
        outputs = torch._VF.lstm(outputs, (state, state),
                                 list(weights[layer * per_layer:(layer + 1) * per_layer]),
                                 lstm.bias, 1, 0.0, lstm.training, lstm.bidirectional,
                                 lstm.batch_first)[0]
    return outputs


def lstm_with_uniform_dropout(lstm: nn.LSTM, inputs: torch.Tensor) -> torch.Tensor:
    """lstm(inputs)[0] in training mode, dropout masks drawn as `torch.rand(...) < 1 - p`.
    inputs: (batch, frame, features) when lstm.batch_first, else (frame, batch, features);
    returns the last layer's outputs, (..., hidden * directions). Zero initial states."""
    if lstm.proj_size:
        raise ValueError("lstm_with_uniform_dropout does not handle proj_size")
    return run_layers(lstm, inputs, lstm._flat_weights, dropout_masks(lstm, inputs))
