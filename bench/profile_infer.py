"""Where sliding-window inference's time goes (eval.inference.infer_file), by operator, and
how busy the device is: the audio-only model with segmentation-3.0's sizes over one
synthetic file, 10 s windows every 1 s, batch 32, float32 unless --amp bf16.

    python bench/profile_infer.py                          # CPU, 2 threads, 3 min file
    python bench/profile_infer.py --device cuda --minutes 10

Both ways of running SincNet take part: `shared` (the sinc convolution once per batch's
stretch of audio, core/sincnet_windows.py) and `per-window` (SincNet on every window, as
pyannote does). First their wall times over --repeats runs each, in turns; then one
profiled run of each: the operators with the most self time (CUDA kernel time on a GPU),
and on a GPU the kernels' total time against the run's wall time (how much of the run the
GPU computes; the rest it waits for the host). On a CPU at two threads the LSTM runs on
two worker threads (core/backbone.py), whose operators the profiler does not list.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.autograd import DeviceType  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from bench import floor  # noqa: E402
from bench.setups import audio_model, device_name  # noqa: E402
from bench.turns import in_turns  # noqa: E402
from bench.vs_pyannote import synthetic_recording  # noqa: E402
from eval.inference import infer_file  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--minutes", type=float, default=3.0, help="file length")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--amp", default="off", choices=["off", "bf16"])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each path")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=12, help="operators listed per path")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = audio_model(device).eval()
    waveform = synthetic_recording(args.minutes)
    where = device_name(device, args.threads)
    print(f"{args.minutes:g} min file, batch {args.batch_size}, amp {args.amp}; {where}; "
          f"torch {torch.__version__}", flush=True)

    def run(share: bool):
        def go() -> None:
            infer_file(model, waveform, step_ratio=0.1, batch_size=args.batch_size,
                       device=device, amp=args.amp, share_sinc=share)
            floor.synchronize(device)
        return go

    runs = {"shared": run(True), "per-window": run(False)}
    for go in runs.values():  # warm-up: cuDNN's algorithm choice, allocator, caches
        go()
    timings = in_turns(runs, args.repeats)
    for name, timing in timings.items():
        seconds = ", ".join(f"{s:.3f}" for s in timing.seconds)
        print(f"{name}: median {timing.median:.3f} s ({seconds}), RTF "
              f"{timing.median / (args.minutes * 60):.2e}, "
              f"{timing.faults_per_run} minor page faults per run", flush=True)
    print(f"shared / per-window: {timings['shared'].median / timings['per-window'].median:.2f}x")

    activities = [ProfilerActivity.CPU] + (
        [ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    for name, go in runs.items():
        with profile(activities=activities) as profiler:
            started = time.perf_counter()
            go()
            wall = time.perf_counter() - started
        events = profiler.key_averages()
        print(f"\n### {name}: profiled run {wall:.3f} s wall (profiler overhead included)")
        if device.type == "cuda":
            kernels = sum(e.self_device_time_total for e in events
                          if e.device_type == DeviceType.CUDA) / 1e6  # kernels and copies
            print(f"GPU kernels and copies {kernels:.3f} s = {100 * kernels / wall:.0f} % of "
                  "the wall time; in the rest the GPU waits for the host")
        print(events.table(sort_by=sort, row_limit=args.top, max_name_column_width=60))
    return 0


if __name__ == "__main__":
    sys.exit(main())
