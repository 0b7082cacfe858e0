"""Stop requests from SLURM (or a user): SIGUSR1, SIGTERM, or a sentinel file.

A handler only sets a flag; the loop asks `StopRequest.local()` at every step boundary and
all ranks agree with one MAX all-reduce, so every rank saves at the same step and exits 0.
The sentinel file is $AVDIAR_STOP_FILE when set, else {experiment}/STOP: the sbatch scripts
touch it when the batch shell gets USR1 (torchrun's agent would die on a raw USR1, so SLURM
signals the batch shell only), and a user can touch it to stop a run cleanly by hand.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Dict, Optional

STOP_FILE_ENV = "AVDIAR_STOP_FILE"
SIGNALS = tuple(getattr(signal, name) for name in ("SIGUSR1", "SIGTERM") if hasattr(signal, name))


class StopRequest:
    """Remembers a stop signal; checks the sentinel file. Use as a context manager."""

    def __init__(self, default_stop_file: Optional[Path] = None):
        env = os.environ.get(STOP_FILE_ENV)
        self.stop_file: Optional[Path] = Path(env) if env else default_stop_file
        self.signal_name: Optional[str] = None
        self._previous: Dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        self.signal_name = signal.Signals(signum).name

    def install(self) -> "StopRequest":
        """Catch SIGUSR1 and SIGTERM (main thread only; elsewhere only the file works)."""
        for sig in SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                break
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __enter__(self) -> "StopRequest":
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    def local(self) -> bool:
        """Has this process been asked to stop (signal received or sentinel file present)?"""
        return self.signal_name is not None or bool(self.stop_file and self.stop_file.exists())

    def reason(self) -> str:
        if self.signal_name:
            return self.signal_name
        if self.stop_file and self.stop_file.exists():
            return f"stop file {self.stop_file}"
        return "another rank's stop request"

    def clear_file(self) -> None:
        """Remove the sentinel so that the requeued job does not stop at once."""
        if self.stop_file is not None:
            try:
                self.stop_file.unlink()
            except FileNotFoundError:
                pass
