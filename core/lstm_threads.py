"""nn.LSTM over two halves of the batch at once, each half on its own CPU thread.

At batch 32 oneDNN's LSTM makes poor use of a second core: frame by frame its work is a
few small products, and two intra-op threads must meet at every one of them. Measured on
the 2-core Xeon (LSTM 128 x 4 bidirectional, batch 32 x 589 frames, 2 threads, best
of 5; `python bench/lstm.py --threads 2 [--amp bf16] [--backward]`): the two halves of the
batch on two Python threads with one intra-op thread each take 0.73x the time of one
two-thread call in float32 inference and 0.55x in bf16; forward + backward 0.96x / 0.93x
alone, and the whole training step 0.86x / 0.89x (`bench/profile_step.py --halves-ab`).
The rows of an LSTM do not interact, so each half's outputs are those rows of the one call
(bitwise in float32 here). With autograd, a custom Function runs each
half's backward on its own thread as well and adds up the halves' weight gradients.

Thread-local state (grad mode, inference mode, CPU autocast) is carried into the worker
threads. Dropout masks are drawn by the calling thread before the split, from the global
generator, so a seeded run stays reproducible.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Callable, List, Sequence, Tuple

import torch
import torch.nn as nn

from core.lstm_dropout import dropout_masks, run_layers

PARTS = 2


def splits_batch(lstm: nn.LSTM, inputs: torch.Tensor) -> bool:
    """True where lstm_in_halves applies: a CPU tensor, two or more intra-op threads, a batch
    of two or more, no projection."""
    batch = inputs.shape[0 if lstm.batch_first else 1]
    return (inputs.device.type == "cpu" and torch.get_num_threads() >= PARTS
            and batch >= PARTS and not lstm.proj_size and inputs.dim() == 3)


def lstm_in_halves(lstm: nn.LSTM, inputs: torch.Tensor) -> torch.Tensor:
    """lstm(inputs)[0] (zero initial states) with the batch split in two halves run side by
    side on two threads; dropout in training as core/lstm_dropout.py draws it.
    inputs: (batch, frame, features) when lstm.batch_first, else (frame, batch, features)."""
    dim = 0 if lstm.batch_first else 1
    parts = _parts(inputs.shape[dim], PARTS)
    masks = dropout_masks(lstm, inputs)
    weights = list(lstm._flat_weights)

    def half(k: int, part_inputs: torch.Tensor, part_weights: Sequence[torch.Tensor]):
        part_masks = [None if m is None else m.narrow(dim, *parts[k]) for m in masks]
        return run_layers(lstm, part_inputs, part_weights, part_masks)

    needs_grad = torch.is_grad_enabled() and (
        inputs.requires_grad or any(w.requires_grad for w in weights))
    if needs_grad:
        return _Halves.apply(half, parts, dim, inputs, *weights)
    outputs = _in_threads([lambda k=k: half(k, inputs.narrow(dim, *parts[k]), weights)
                           for k in range(len(parts))])
    return torch.cat(outputs, dim=dim)


class _Halves(torch.autograd.Function):
    """Forward: each part's graph built on its own thread from detached leaves. Backward:
    each part's torch.autograd.grad on its own thread; weight gradients summed."""

    @staticmethod
    def forward(ctx, half: Callable, parts: List[Tuple[int, int]], dim: int,
                inputs: torch.Tensor, *weights: torch.Tensor) -> torch.Tensor:
        def build(k: int):
            leaf = inputs.narrow(dim, *parts[k]).detach().requires_grad_(inputs.requires_grad)
            leaves = [w.detach().requires_grad_(w.requires_grad) for w in weights]
            with torch.enable_grad():
                return leaf, leaves, half(k, leaf, leaves)

        ctx.graphs = _in_threads([lambda k=k: build(k) for k in range(len(parts))])
        ctx.parts, ctx.dim = parts, dim
        return torch.cat([outputs.detach() for _, _, outputs in ctx.graphs], dim=dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        graphs, parts, dim = ctx.graphs, ctx.parts, ctx.dim
        del ctx.graphs

        def differentiate(k: int):
            leaf, leaves, outputs = graphs[k]
            wanted = [t for t in [leaf] + leaves if t.requires_grad]
            found = iter(torch.autograd.grad(outputs, wanted, grad.narrow(dim, *parts[k]),
                                             allow_unused=True))
            return [next(found) if t.requires_grad else None for t in [leaf] + leaves]

        results = _in_threads([lambda k=k: differentiate(k) for k in range(len(parts))])
        inputs_grad = None
        if results[0][0] is not None:
            inputs_grad = torch.cat([r[0] for r in results], dim=dim)
        weight_grads = []
        for column in zip(*(r[1:] for r in results)):
            present = [g for g in column if g is not None]
            weight_grads.append(torch.stack(present).sum(0) if present else None)
        return (None, None, None, inputs_grad, *weight_grads)


def _parts(size: int, count: int) -> List[Tuple[int, int]]:
    """(start, length) of `count` near-equal consecutive parts of range(size)."""
    bounds = [size * k // count for k in range(count + 1)]
    return [(bounds[k], bounds[k + 1] - bounds[k]) for k in range(count)]


def _in_threads(jobs: List[Callable]) -> list:
    """Run each job on its own thread, with the caller's intra-op threads shared out among
    them and the caller's grad mode, inference mode and CPU autocast; re-raises the first
    error."""
    caller_threads = torch.get_num_threads()
    threads_each = max(caller_threads // len(jobs), 1)
    state = _thread_state()
    results: list = [None] * len(jobs)
    errors: list = [None] * len(jobs)

    def work(k: int) -> None:
        try:
            torch.set_num_threads(threads_each)
            with state():
                results[k] = jobs[k]()
        except BaseException as error:  # handed to the caller below
            errors[k] = error

    workers = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(len(jobs))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    # set_num_threads also sets the default that new threads start from: restore it
    torch.set_num_threads(caller_threads)
    for error in errors:
        if error is not None:
            raise error
    return results


def _thread_state() -> Callable[[], contextlib.AbstractContextManager]:
    """A context factory that re-creates the calling thread's grad mode, inference mode and
    CPU autocast in another thread (all three are thread-local)."""
    inference = torch.is_inference_mode_enabled()
    grad = torch.is_grad_enabled()
    autocast, dtype = _cpu_autocast()

    @contextlib.contextmanager
    def state():
        with contextlib.ExitStack() as stack:
            if inference:
                stack.enter_context(torch.inference_mode())
            stack.enter_context(torch.set_grad_enabled(grad))
            if autocast:
                stack.enter_context(torch.autocast("cpu", dtype=dtype))
            yield

    return state


def _cpu_autocast() -> Tuple[bool, torch.dtype]:
    """(enabled, dtype) of the calling thread's CPU autocast (torch < 2.4 spells it apart)."""
    try:
        return torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")
    except TypeError:
        return torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()
