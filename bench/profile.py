"""Where a training step's or sliding-window inference's time goes, by operator.

    python -m bench.profile --part step                    # CPU, 2 threads
    python -m bench.profile --part infer --minutes 3
    python -m bench.profile --part step --device cuda --amp bf16
    AVDIAR_SPEED_PATHS=0 python -m bench.profile --part infer   # the plain path (core/speed.py)

step: the training step (forward, NLL, backward, Adam) of the audio-only model with
segmentation-3.0's sizes on batch x 10 s. infer: eval.inference.infer_file over one
synthetic file, 10 s windows every 1 s. Prints the median wall time of --repeats runs after
--warmup, then one profiled run (--profiled steps for step): the operators with the most
self time (CUDA kernel time on a GPU), and on a GPU the kernels' share of the wall time
(the rest the GPU waits for the host).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from bench import timing
from bench.workloads import audio_model, synthetic_recording, training_step
from core import speed
from eval.inference import infer_file


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["step", "infer"], required=True)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--amp", default="off", choices=["off", "bf16"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--minutes", type=float, default=3.0, help="inference file length")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs")
    parser.add_argument("--profiled", type=int, default=3, help="profiled steps (step part)")
    parser.add_argument("--rows", type=int, default=15, help="operators listed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench.profile --device cuda: torch sees no CUDA device")
    device = torch.device(args.device)
    model = audio_model(device)
    if args.part == "step":
        step = training_step(model, device, args.batch_size, args.amp)

        def run() -> None:
            step()
        what = f"step, batch {args.batch_size} x 10 s"
        profiled_runs = args.profiled
    else:
        model.eval()
        waveform = synthetic_recording(args.minutes)

        def run() -> None:
            infer_file(model, waveform, step_ratio=0.1, batch_size=args.batch_size,
                       device=device, amp=args.amp)
        what = f"inference, {args.minutes:g} min file, batch {args.batch_size}"
        profiled_runs = 1

    print(timing.machine_line(device, args.threads), flush=True)
    timed = timing.in_turns({"run": run}, args.repeats, args.warmup, device)["run"]
    print(f"{what}, amp {args.amp}, speed paths {'on' if speed.enabled() else 'off'}: median "
          f"{timed.median:.3f} s wall ({timed.runs(digits=3)}), "
          f"{timed.faults_per_run} minor page faults per run", flush=True)

    activities = [ProfilerActivity.CPU] + (
        [ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        started = time.perf_counter()
        for _ in range(profiled_runs):
            run()
        timing.synchronize(device)
        wall = time.perf_counter() - started
    events = profiler.key_averages()
    print(f"\n{profiled_runs} profiled run(s): {wall:.3f} s wall (profiler overhead included)")
    if device.type == "cuda":
        kernels = sum(e.self_device_time_total for e in events
                      if e.device_type == DeviceType.CUDA) / 1e6  # kernels and copies
        print(f"GPU kernels and copies {kernels:.3f} s = {100 * kernels / wall:.0f} % of the "
              "wall time; in the rest the GPU waits for the host")
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(events.table(sort_by=sort, row_limit=args.rows, max_name_column_width=60))
    return 0


if __name__ == "__main__":
    sys.exit(main())
