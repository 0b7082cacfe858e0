"""The one switch for avdiar's speed paths.

A speed path computes what the plain path computes (pyannote's operations, one module call
each) in another way that is faster end to end on the benchmark it targets. Each is kept
only while it earns at least 1.2x there against the plain path, measured in turns
(`python -m bench.speed_paths`; figures in bench/results/). With the switch on:

- sliding-window inference (eval.inference.infer_file) convolves each batch's stretch of
  audio with the sinc filters once instead of once per window
  (`core.sincnet.SincNet.shared_first_layer`, core/sincnet_windows.py). Outputs equal the
  plain path's to float32 rounding (tests/test_eval_inference.py bounds both against the
  float64 model).

No speed path looks at the number of threads: with the switch in either position the
eval forward and whole-file inference give bitwise the same numbers at 1 thread as at 2
(tests/test_core_speed.py). On by default: the path is deterministic, within float32
rounding of the plain path, and faster on a CPU (bench/results/2026-12-03-speed-paths.md).
Off gives the plain path, op for op what pyannote.audio runs.

Set it with the environment variable AVDIAR_SPEED_PATHS (1/on/true/yes or 0/off/false/no),
read at import, or in code with `set_enabled(flag)` or `with speed_paths(flag): ...`.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

ENV_VAR = "AVDIAR_SPEED_PATHS"
_ON = ("1", "on", "true", "yes")
_OFF = ("0", "off", "false", "no")
DEFAULT = True


def parse(value: str | None) -> bool:
    """The switch's position for an environment value: DEFAULT when unset or empty."""
    if value is None or not value.strip():
        return DEFAULT
    word = value.strip().lower()
    if word in _ON:
        return True
    if word in _OFF:
        return False
    raise ValueError(f"{ENV_VAR}={value!r}: expected one of {', '.join(_ON + _OFF)}")


_enabled = parse(os.environ.get(ENV_VAR))


def enabled() -> bool:
    """True when the speed paths are on."""
    return _enabled


def set_enabled(flag: bool) -> None:
    """Turn the speed paths on or off for the whole process."""
    global _enabled
    _enabled = bool(flag)


@contextlib.contextmanager
def speed_paths(flag: bool) -> Iterator[None]:
    """Within the context, the speed paths on (`flag` True) or off; restored after."""
    before = _enabled
    set_enabled(flag)
    try:
        yield
    finally:
        set_enabled(before)
