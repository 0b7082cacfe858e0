"""Training's running sums of named metrics (loss, local DER counts), reduced once.

The local DER counts themselves live in core/local_der.py, shared with eval; der_sums and
der_from_sums are re-exported here for bench/video_probe.py, which imports them from here.
"""

from __future__ import annotations

from typing import Dict

from core.local_der import der_from_sums, der_sums

__all__ = ["Sums", "der_from_sums", "der_sums"]


class Sums:
    """Named running sums (Python floats), added batch by batch, reduced once at the end."""

    def __init__(self) -> None:
        self.values: Dict[str, float] = {}

    def add(self, **values: float) -> None:
        for key, value in values.items():
            self.values[key] = self.values.get(key, 0.0) + float(value)
