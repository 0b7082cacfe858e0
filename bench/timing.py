"""The one timing harness of the benchmarks: ways of doing the same work timed in turns.

A shared machine swings from minute to minute, so a comparison times its candidates in
turns: every repeat runs each candidate once, in an order that rotates from one repeat
to the next, after untimed warm-up runs; the medians and their ratio are what to read.
`machine_line` names where the figures came from (date, CPU or GPU, threads, load).
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import torch


@dataclass
class Timings:
    """One candidate's timed runs: wall and CPU seconds (of this process) of each run, and
    the minor page faults of all runs together."""

    wall_s: List[float] = field(default_factory=list)
    cpu_s: List[float] = field(default_factory=list)
    faults: int = 0

    @property
    def median(self) -> float:
        """Median wall seconds."""
        return statistics.median(self.wall_s)

    @property
    def median_cpu(self) -> float:
        """Median CPU seconds (all threads of the process)."""
        return statistics.median(self.cpu_s)

    @property
    def faults_per_run(self) -> int:
        return self.faults // max(len(self.wall_s), 1)

    def runs(self, scale: float = 1.0, digits: int = 2) -> str:
        """Each run's wall seconds times `scale`, in the order they ran: "2.31 2.40 ..."."""
        return " ".join(f"{scale * s:.{digits}f}" for s in self.wall_s)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def in_turns(runs: Dict[str, Callable[[], object]], repeats: int, warmup: int = 1,
             device: torch.device = torch.device("cpu"), verbose: bool = False,
             ) -> Dict[str, Timings]:
    """Each of `runs` `warmup` times untimed, then `repeats` times timed, in turns: repeat r
    starts with candidate r mod len(runs) and goes round from there, so each one runs
    first, second, ... equally often. Each timed run ends with `synchronize(device)`."""
    names = list(runs)
    for _ in range(warmup):
        for name in names:
            runs[name]()
            synchronize(device)
    timings = {name: Timings() for name in names}
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize(device)
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            started, started_cpu = time.perf_counter(), time.process_time()
            runs[name]()
            synchronize(device)
            timings[name].wall_s.append(time.perf_counter() - started)
            timings[name].cpu_s.append(time.process_time() - started_cpu)
            timings[name].faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
            if verbose:
                print(f"  repeat {repeat + 1}/{repeats} {name}: {timings[name].wall_s[-1]:.3f} s",
                      flush=True)
    return timings


def ratio(timings: Dict[str, Timings], candidate: str, baseline: str) -> float:
    """Median wall time of `candidate` over that of `baseline` (below 1: candidate faster)."""
    return timings[candidate].median / timings[baseline].median


def summary(timings: Dict[str, Timings], baseline: Optional[str] = None,
            unit_scale: float = 1.0, unit: str = "s") -> str:
    """A Markdown table: each candidate's median wall and CPU time (times `unit_scale`, in
    `unit`), its runs, page faults per run, and with `baseline` its ratio to it and the
    speed-up (baseline / candidate)."""
    lines = [f"| candidate | median wall {unit} | median CPU {unit} | runs (wall {unit}) | "
             "minor faults / run | / baseline | speed-up |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: |"]
    for name, timed in timings.items():
        relative = speedup = ""
        if baseline is not None:
            value = ratio(timings, name, baseline)
            relative, speedup = f"{value:.3f}x", f"{1 / value:.2f}x"
        lines.append(f"| {name} | {unit_scale * timed.median:.3f} | "
                     f"{unit_scale * timed.median_cpu:.3f} | {timed.runs(unit_scale)} | "
                     f"{timed.faults_per_run} | {relative} | {speedup} |")
    return "\n".join(lines)


def machine_line(device: torch.device = torch.device("cpu"),
                 threads: Optional[int] = None) -> str:
    """Where and when: UTC time, the CPU (model, capability, cores) or GPU, torch's version,
    intra-op threads and the load average, e.g. "2026-11-28 08:00 UTC; AMD EPYC, AVX2,
    2 cores; torch 2.11.0; 2 threads; load 1.9 2.1 2.3"."""
    device = torch.device(device)
    threads = torch.get_num_threads() if threads is None else threads
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
    else:
        where = (f"{_cpu_model()}, {torch.backends.cpu.get_cpu_capability()}, "
                 f"{os.cpu_count()} cores")
    try:
        load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    except OSError:
        load = "n/a"
    return f"{when}; {where}; torch {torch.__version__}; {threads} threads; load {load}"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
