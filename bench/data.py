"""Data loader throughput: chunks per second with 0, 1 and 2 workers, and worker memory.

    python run.py synth --out /tmp/avdiar_bench_db --files 20 --minutes 60 \
        --eval-minutes 1 --esize 384            # once: a 1-hour train split, 384-dim video
    python -m bench.data --database /tmp/avdiar_bench_db/database.yml

    python -m bench.data --compare --repeats 3     # also the former path, 3 rounds

Loads 10 s chunks (audio, 384-dim video, targets) in batches through make_train_loader
and prints a table: workers, chunks/s (after a warm-up of a few batches), CPU time per
batch of the main process and of all workers together (what the chunks/s would be on
idle cores: cores * 1000 / (main + workers ms) * batch size), and the peak resident
memory (VmHWM) and private memory (USS, from /proc/PID/smaps_rollup) of one worker.
Memory is measured on the full database and on a quarter of it, to show that a worker's
memory does not grow with the size of the database. `--compare` also measures workers
that return every batch in fresh shared memory (recycle=False, the former path).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from bench.timing import machine_line
from data import build_index, data_summary, load_protocol, make_train_loader
from data.index import FileIndex
from data.synthetic import PROTOCOL


def _memory_mb(pid: int) -> tuple:
    """(peak RSS, private USS) of process `pid` in MB."""
    peak = uss = float("nan")
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
        private = 0
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                private += int(line.split()[1])
        uss = private / 1024
    except OSError:
        pass
    return peak, uss


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


def _subset(index: FileIndex, count: int) -> FileIndex:
    """The first `count` files of an index (for the memory-vs-size comparison)."""
    keep = {}
    a, t, s = index.annotated_offsets, index.turn_offsets, index.speaker_offsets
    for name in ("uri", "audio", "sample_rate", "num_samples", "channels", "video",
                 "video_frames"):
        keep[name] = getattr(index, name)[:count]
    keep.update(annotated=index.annotated[:a[count]], annotated_offsets=a[:count + 1],
                turns=index.turns[:t[count]], turn_speakers=index.turn_speakers[:t[count]],
                turn_offsets=t[:count + 1], speakers=index.speakers[:s[count]],
                speaker_offsets=s[:count + 1])
    meta = {"protocol": index.protocol, "split": index.split, "esize": index.esize,
            "video_fps": index.video_fps, "problems": [], "missing_video": []}
    return FileIndex(keep, meta)


def measure(index: FileIndex, workers: int, batch_size: int, batches: int, warmup: int,
            recycle: bool = True) -> dict:
    loader = make_train_loader(index, duration_s=10.0, batch_size=batch_size, seed=0,
                               num_workers=workers, batches_per_epoch=warmup + batches,
                               recycle=recycle)
    iterator = iter(loader)
    for _ in range(warmup):
        next(iterator)
    started, cpu_started = time.perf_counter(), time.process_time()
    chunks = 0
    for batch in iterator:
        chunks += batch["waveforms"].shape[0]
    elapsed = time.perf_counter() - started
    main_cpu = time.process_time() - cpu_started
    peak = uss = float("nan")
    workers_pids = [w.pid for w in getattr(loader._loader._iterator, "_workers", [])]
    if workers_pids:
        peak, uss = _memory_mb(workers_pids[0])
    # every batch (warm-up included) was built by the workers since they started
    worker_cpu = sum(_cpu_s(pid) for pid in workers_pids)
    del iterator, loader
    return {"chunks_per_s": chunks / elapsed, "peak_mb": peak, "uss_mb": uss,
            "main_ms": 1000 * main_cpu / batches,
            "worker_ms": 1000 * worker_cpu / (warmup + batches)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="/tmp/avdiar_bench_db/database.yml")
    parser.add_argument("--protocol", default=PROTOCOL)
    parser.add_argument("--video-dir", default=None, help="default: video/ next to database")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=40, help="timed batches per setting")
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=1, help="rounds of every setting "
                        "(interleaved); the table gives the median and each round")
    parser.add_argument("--compare", action="store_true", help="also measure the former "
                        "path: fresh shared memory for every batch (recycle=False)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    video_dir = args.video_dir or str(Path(args.database).parent / "video")
    protocol = load_protocol(args.protocol, [args.database])
    index = build_index(protocol, "train", video_dir=video_dir, database_files=[args.database],
                        progress=False)
    print(machine_line(threads=1))
    print(data_summary(index, duration_s=10.0))
    print(f"cpus: {os.cpu_count()}, batch size {args.batch_size}, 10 s chunks, "
          f"esize {index.esize}, {args.batches} timed batches after {args.warmup}, "
          f"{args.repeats} round(s)\n")
    settings = [(len(index), w) for w in args.workers]
    if len(index) >= 4 and 2 in args.workers:
        settings.append((len(index) // 4, 2))
    paths = [True, False] if args.compare else [True]
    results: dict = {}
    for _ in range(args.repeats):
        for files, workers in settings:
            subset = index if files == len(index) else _subset(index, files)
            for recycle in (paths if workers else [True]):  # in-process: one path
                result = measure(subset, workers, args.batch_size, args.batches, args.warmup,
                                 recycle)
                results.setdefault((files, workers, recycle), []).append(result)
    print("| files | workers | worker buffers | chunks/s (median) | rounds | main CPU "
          "ms/batch | workers CPU ms/batch | worker peak RSS MB | worker USS MB |")
    print("|---:|---:|---|---:|---|---:|---:|---:|---:|")
    for (files, workers, recycle), rounds in results.items():
        rates = [r["chunks_per_s"] for r in rounds]
        kind = ("in-process" if not workers else "recycled slots" if recycle
                else "fresh per batch (former)")
        print(f"| {files} | {workers} | {kind} | {statistics.median(rates):.0f} | "
              f"{' '.join(f'{r:.0f}' for r in rates)} | "
              f"{statistics.median(r['main_ms'] for r in rounds):.1f} | "
              f"{statistics.median(r['worker_ms'] for r in rounds):.1f} | "
              f"{max(r['peak_mb'] for r in rounds):.0f} | {max(r['uss_mb'] for r in rounds):.0f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
