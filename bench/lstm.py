"""Ways to run PyanNet's LSTM faster on a CPU, timed against torch.nn.LSTM (oneDNN).

    python bench/lstm.py                         # batch 32 x 589 frames, 1 and 2 threads
    python bench/lstm.py --threads 2 --repeats 5
    python bench/lstm.py --threads 2 --amp bf16 --backward   # training: forward + backward

The LSTM is two thirds of a step and of inference (bench/stages.py); every variant here
computes the same layers (segmentation-3.0 sizes: input 60, hidden 128, 4 bidirectional
layers) in inference mode (no autograd; with `--backward`, forward + backward of a
training-mode LSTM, dropout 0.5, only the first and the batch-halves variants); under
`--amp bf16` in CPU bf16 autocast; the best of `--repeats` runs is kept:

- `nn.LSTM`: one bidirectional 4-layer module (what avdiar and pyannote run);
- `directions, serial`: each layer as two unidirectional modules, the reverse one on the
  time-flipped input (same numbers, a check that the split itself costs nothing);
- `directions, 2 Python threads`: the same, the two directions of a layer in two threads
  (torch releases the GIL in its kernels), torch's intra-op threads set to 1 (two cores in
  all, so it is only run in the rows of 2 or more threads);
- `batch halves, 2 threads`: `core.lstm_threads.lstm_in_halves`, what avdiar runs on a
  CPU with two or more threads: the batch in two halves, each on its own Python thread with
  half the intra-op threads (with `--backward`: nn.LSTM's counterpart is
  `core.lstm_dropout.lstm_with_uniform_dropout`, the same dropout masks);
- `int8 dynamic`: `torch.ao.quantization.quantize_dynamic` on the LSTM (int8 weights,
  fbgemm); not the same numbers, its max abs difference is printed.

Prints the best wall time of each (seconds per batch), its ratio to nn.LSTM's at the same
thread count, and the max abs difference of the outputs.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.lstm_dropout import lstm_with_uniform_dropout  # noqa: E402
from core.lstm_threads import lstm_in_halves  # noqa: E402

FEATURES, HIDDEN, LAYERS = 60, 128, 4


def split_directions(lstm: torch.nn.LSTM) -> List[Tuple[torch.nn.LSTM, torch.nn.LSTM]]:
    """One (forward, reverse) pair of unidirectional 1-layer LSTMs per layer, same weights."""
    pairs = []
    for layer in range(lstm.num_layers):
        size_in = lstm.input_size if layer == 0 else 2 * lstm.hidden_size
        pair = []
        for suffix in (f"_l{layer}", f"_l{layer}_reverse"):
            single = torch.nn.LSTM(size_in, lstm.hidden_size, batch_first=True).eval()
            with torch.no_grad():
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(single, f"{name}_l0").copy_(getattr(lstm, name + suffix))
            pair.append(single)
        pairs.append((pair[0], pair[1]))
    return pairs


def run_serial(pairs, x: torch.Tensor) -> torch.Tensor:
    """(batch, frame, feature) -> (batch, frame, 2 * hidden), directions one after the other."""
    for forward, reverse in pairs:
        x = torch.cat([forward(x)[0], reverse(x.flip(1))[0].flip(1)], dim=-1)
    return x


def run_threaded(pairs, x: torch.Tensor) -> torch.Tensor:
    """As run_serial, the reverse direction of each layer in a second Python thread."""
    for forward, reverse in pairs:
        result: Dict[str, torch.Tensor] = {}
        layer_in = x

        def backwards() -> None:
            result["reverse"] = reverse(layer_in.flip(1))[0].flip(1)

        worker = threading.Thread(target=backwards)
        worker.start()
        ahead = forward(layer_in)[0]
        worker.join()
        x = torch.cat([ahead, result["reverse"]], dim=-1)
    return x


def best_time(fn: Callable[[], torch.Tensor], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--frames", type=int, default=589, help="frames per chunk (589 = 10 s)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--amp", default="off", choices=["off", "bf16"])
    parser.add_argument("--backward", action="store_true",
                        help="time forward + backward in training mode (dropout 0.5)")
    args = parser.parse_args()

    torch.manual_seed(0)
    x = torch.randn(args.batch_size, args.frames, FEATURES)
    lstm = torch.nn.LSTM(FEATURES, HIDDEN, num_layers=LAYERS, bidirectional=True,
                         batch_first=True, dropout=0.5 if args.backward else 0.0)
    lstm.train(args.backward)
    halves = "batch halves, 2 threads"
    threaded = "directions, 2 Python threads"  # one intra-op thread per Python thread
    if args.backward:
        upstream = torch.randn(args.batch_size, args.frames, 2 * HIDDEN)

        def trained(run: Callable) -> Callable[[], torch.Tensor]:
            def step() -> torch.Tensor:
                lstm.zero_grad()
                torch.manual_seed(1)  # the same dropout masks in every variant
                with autocast():
                    outputs = run(lstm, x)
                outputs.float().backward(upstream)
                return outputs.detach()
            return step

        variants = {"nn.LSTM": trained(lstm_with_uniform_dropout), halves: trained(lstm_in_halves)}
        multi_threaded = {halves}
    else:
        pairs = split_directions(lstm)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantized = torch.ao.quantization.quantize_dynamic(
                torch.nn.Sequential(lstm), {torch.nn.LSTM}, dtype=torch.qint8)
        variants = {
            "nn.LSTM": lambda: lstm(x)[0],
            "directions, serial": lambda: run_serial(pairs, x),
            threaded: lambda: run_threaded(pairs, x),
            halves: lambda: lstm_in_halves(lstm, x),
            "int8 dynamic": lambda: quantized(x)[0],
        }
        multi_threaded = {threaded, halves}
        if args.amp == "bf16":  # the second thread of `threaded` would not be under autocast
            del variants["int8 dynamic"], variants[threaded]

    def autocast():
        if args.amp == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    mode = "forward + backward, training" if args.backward else "inference"
    print(f"batch {args.batch_size} x {args.frames} frames, LSTM {FEATURES}->{HIDDEN} "
          f"x {LAYERS} bidirectional, {mode}, amp {args.amp}, best of {args.repeats}")
    print("| threads | variant | s / batch | / nn.LSTM | max abs diff |")
    print("| ---: | --- | ---: | ---: | ---: |")
    grad = contextlib.nullcontext() if args.backward else torch.no_grad()
    with grad, autocast():
        reference = variants["nn.LSTM"]().float()
        for threads in args.threads:
            timings = {}
            for name, fn in variants.items():
                if name in multi_threaded and threads < 2:
                    continue
                torch.set_num_threads(1 if name == threaded else threads)
                diff = (fn().float() - reference).abs().max().item()
                timings[name] = (best_time(fn, args.repeats), diff)
            base = timings["nn.LSTM"][0]
            for name, (seconds, diff) in timings.items():
                print(f"| {threads} | {name} | {seconds:.3f} | {seconds / base:.2f}x "
                      f"| {diff:.1e} |")


if __name__ == "__main__":
    main()
