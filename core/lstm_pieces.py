"""nn.LSTM inference on a CPU a few sequences at a time.

oneDNN's LSTM allocates buffers in proportion to batch x frames on every call. For batch 32
x 589 frames (PyanNet, 10 s windows) they are large enough for glibc to map them afresh
each call, and the kernel faults every page in again: 74 000 - 84 000 minor page faults
per call on a 2-core Xeon, where a fault costs 1-3 us. Calls on at most 8 sequences of 589
frames stay in memory the allocator keeps. Measured in whole-file inference at one thread
(`python bench/lstm_pieces.py --threads 1`: 3 min of audio, 10 s windows, 1 s step, batch
32; in turns, medians of 6): 5.40 -> 4.40 s (0.82x), page faults 359 000 -> 2 000 per
file. At two or more threads the batch runs in two halves on two threads
(core/lstm_threads.py), 16 sequences each; pieces inside the halves cut the faults too
(123 000-167 000 -> 19 000 per file) but not clearly the time (0.94x to 1.11x in four
runs), so they are not used there. The rows of an LSTM do not interact: outputs are
bitwise those of one call.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from core.lstm_dropout import run_layers

FRAMES_PER_CALL = 8 * 589  # sequences x frames per library call


def in_pieces(lstm: nn.LSTM, inputs: torch.Tensor) -> bool:
    """True where lstm_in_pieces applies: CPU inference (no autograd, no dropout) on more
    sequences than one piece holds."""
    if inputs.dim() != 3:
        return False
    dim = 0 if lstm.batch_first else 1
    return (inputs.device.type == "cpu" and not torch.is_grad_enabled()
            and not (lstm.training and lstm.dropout > 0) and not lstm.proj_size
            and inputs.shape[dim] > _piece(inputs.shape[1 - dim]))


def lstm_in_pieces(lstm: nn.LSTM, inputs: torch.Tensor) -> torch.Tensor:
    """lstm(inputs)[0] (zero initial states), computed a piece of the batch at a time.
    inputs: (batch, frame, features) when lstm.batch_first, else (frame, batch, features)."""
    weights = list(lstm._flat_weights)
    masks = [None] * (lstm.num_layers - 1)
    dim = 0 if lstm.batch_first else 1
    batch, piece = inputs.shape[dim], _piece(inputs.shape[1 - dim])
    outputs = [run_layers(lstm, inputs.narrow(dim, start, min(piece, batch - start)), weights,
                          masks) for start in range(0, batch, piece)]
    return torch.cat(outputs, dim=dim) if len(outputs) > 1 else outputs[0]


def _piece(frames: int) -> int:
    """Sequences per library call for sequences of `frames` frames (at least one)."""
    return max(FRAMES_PER_CALL // max(frames, 1), 1)
