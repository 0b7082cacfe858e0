"""Time a few ways of doing the same work in turns, so that the machine's swings hit each
alike: the order alternates from one repeat to the next."""

from __future__ import annotations

import resource
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List


@dataclass
class Timings:
    """Wall seconds of each run and the minor page faults of all runs together."""

    seconds: List[float] = field(default_factory=list)
    faults: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def faults_per_run(self) -> int:
        return self.faults // max(len(self.seconds), 1)


def in_turns(runs: Dict[str, Callable[[], object]], repeats: int) -> Dict[str, Timings]:
    """Each of `runs` `repeats` times, in turns: forward order on odd repeats, reversed on
    even ones (the first repeat starts with the last run)."""
    timings = {name: Timings() for name in runs}
    for repeat in range(repeats):
        for name in (list(runs) if repeat % 2 else list(runs)[::-1]):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            started = time.perf_counter()
            runs[name]()
            timings[name].seconds.append(time.perf_counter() - started)
            timings[name].faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    return timings
