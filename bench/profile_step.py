"""Where a training step's time goes, by operator (torch.profiler): the audio-only model with
segmentation-3.0's sizes, batch x 10 s, forward + NLL + backward + Adam.

    python bench/profile_step.py                        # CPU
    python bench/profile_step.py --device cuda --amp bf16
    python bench/profile_step.py --amp bf16 --halves-ab 6   # CPU LSTM in halves vs one call

Prints the step time (median of --steps after --warmup) and the operators with the most
self time (on a GPU: CUDA kernel time) over --steps profiled steps.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from bench import floor  # noqa: E402
from bench.setups import audio_model  # noqa: E402
from bench.turns import in_turns  # noqa: E402


def audio_training_step(device: torch.device, batch_size: int = 32,
                        amp: str = "off") -> Callable[[], None]:
    """One training step (forward, NLL on random powerset targets, backward, Adam) of the
    audio-only model with segmentation-3.0's sizes (LSTM 128 x 4, dropout 0.5) on a fixed
    random batch of batch_size x 10 s on `device`; amp "off" or "bf16". No synchronisation."""
    model = audio_model(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    waveforms = 0.1 * torch.randn(batch_size, 1, 160000, device=device)
    targets = torch.randint(0, 7, (batch_size, 589), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            scores = model(waveforms)
        loss = F.nll_loss(scores.float().reshape(-1, scores.shape[-1]), targets.reshape(-1))
        loss.backward()
        optimizer.step()

    return step


def halves_ab(train_step: Callable[[], None], pairs: int, warmup: int) -> int:
    """Steps with the LSTM's batch in two halves on two threads and as one nn.LSTM call,
    in turns (which goes first alternates); prints each and the medians."""
    import core.backbone as backbone

    split = backbone.splits_batch
    settings = {"halves": split, "one call": lambda lstm, inputs: False}

    def step_with(setting: Callable) -> Callable[[], None]:
        def step() -> None:
            backbone.splits_batch = setting
            train_step()
        return step

    for _ in range(warmup):
        train_step()
    try:
        timings = in_turns({name: step_with(s) for name, s in settings.items()}, pairs)
    finally:
        backbone.splits_batch = split
    for name, timed in timings.items():
        print(f"{name}: median {timed.median:.2f} s "
              f"({', '.join(f'{v:.2f}' for v in timed.seconds)})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--amp", default="off", choices=["off", "bf16"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--halves-ab", type=int, default=0, metavar="PAIRS",
                        help="instead of profiling: time PAIRS steps with the CPU LSTM in two "
                             "halves (core/lstm_threads.py) and as one call, in turns")
    args = parser.parse_args()
    device = torch.device(args.device)
    train_step = audio_training_step(device, args.batch_size, args.amp)
    if args.halves_ab:
        return halves_ab(train_step, args.halves_ab, args.warmup)

    def step() -> float:
        floor.synchronize(device)
        started = time.perf_counter()
        train_step()
        floor.synchronize(device)
        return time.perf_counter() - started

    for _ in range(args.warmup):
        step()
    times = [step() for _ in range(args.steps)]
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda"
                                           else [])
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            step()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{name}, batch {args.batch_size} x 10 s, amp {args.amp}: step "
          f"{1000 * statistics.median(times):.1f} ms (median of {args.steps})")
    print(prof.key_averages().table(sort_by=key, row_limit=args.rows, max_name_column_width=60))
    return 0


if __name__ == "__main__":
    sys.exit(main())
