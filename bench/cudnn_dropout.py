"""What re-seeding cuDNN's LSTM dropout before every step costs (train.checkpoint.
reseed_cudnn_dropout, which makes resumed GPU runs bit-identical to uninterrupted ones).

    python bench/cudnn_dropout.py --repeats 5 --steps 20    # needs a CUDA device

Times the training step (forward, NLL, backward, Adam) of the audio-only model with
segmentation-3.0's sizes (LSTM dropout 0.5) on batch x 10 s, with and without the re-seed,
in turns (5 rounds of --steps steps each by default); prints the median ms per step of each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.profile_step import audio_training_step  # noqa: E402
from train.checkpoint import reseed_cudnn_dropout  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed round")
    parser.add_argument("--repeats", type=int, default=5, help="rounds per variant")
    parser.add_argument("--amp", default="bf16", choices=["off", "bf16"])
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/cudnn_dropout.py needs a CUDA device")
    device = torch.device("cuda")
    train_step = audio_training_step(device, args.batch_size, args.amp)

    def step(reseed: bool) -> None:
        if reseed:
            reseed_cudnn_dropout(device)
        train_step()

    times = {False: [], True: []}
    for round_ in range(args.repeats + 1):  # round 0 warms up
        for reseed in ((False, True) if round_ % 2 else (True, False)):
            torch.cuda.synchronize()
            started = time.perf_counter()
            for _ in range(args.steps):
                step(reseed)
            torch.cuda.synchronize()
            if round_:
                times[reseed].append(1000 * (time.perf_counter() - started) / args.steps)
    plain, reseeded = statistics.median(times[False]), statistics.median(times[True])
    print(f"{torch.cuda.get_device_name(device)}, batch {args.batch_size} x 10 s, amp {args.amp}")
    print(f"ms per step, median of {args.repeats} rounds of {args.steps}: without re-seed "
          f"{plain:.2f} ({' '.join(f'{t:.2f}' for t in times[False])}), with re-seed "
          f"{reseeded:.2f} ({' '.join(f'{t:.2f}' for t in times[True])}): "
          f"{reseeded / plain:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
