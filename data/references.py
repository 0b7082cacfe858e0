"""RTTM and UEM files, read line by line: every problem names the file and the line.

    read_rttm(path) -> {uri: Annotation}      SPEAKER uri channel start duration <NA> <NA> label
    read_uem(path) -> {uri: Timeline}         uri channel start end
    unknown_uris(path, listed) -> [uri]       uris of an RTTM/UEM file that `listed` lacks
    unknown_uris_message(path, uris, where) -> one line naming them

Times are seconds. Blank lines and comments (`;;` or `#`) are skipped. A line with too few
fields, a start, duration or end that is not a finite number, a negative start or
duration, or an end before its start raises DataError "FILE line N: ..." (pyannote.database
reads such lines with "could not convert string to float" and nothing else, or drops
negative durations without a word). Zero-duration turns are kept out of the Annotation,
as pyannote does. RTTM lines of another type than SPEAKER are left out with one
DataWarning per file.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Dict, Iterator, List, Sequence, Tuple, Union

from pyannote.core import Annotation, Segment, Timeline

from data.errors import DataError, DataWarning

PathLike = Union[str, Path]


def _lines(path: PathLike) -> Iterator[Tuple[int, List[str]]]:
    """(line number from 1, fields) of every line that is not blank or a comment."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read ({error})") from error
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if fields and not fields[0].startswith((";;", "#")):
            yield number, fields


def _seconds(path: PathLike, number: int, name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{path} line {number}: {name} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{path} line {number}: {name} {text!r} is not a finite number")
    if value < 0:
        raise DataError(f"{path} line {number}: negative {name} {value:g} s")
    return value


def _rttm_turns(path: PathLike) -> Iterator[Tuple[int, str, float, float, str]]:
    """(line number, uri, start_s, duration_s, label) of every SPEAKER line."""
    others: List[int] = []
    for number, fields in _lines(path):
        if len(fields) < 8:
            raise DataError(f"{path} line {number}: {len(fields)} fields; an RTTM line is "
                            "SPEAKER uri channel start duration <NA> <NA> label <NA> <NA>")
        if fields[0] != "SPEAKER":
            others.append(number)
            continue
        start = _seconds(path, number, "start", fields[3])
        duration = _seconds(path, number, "duration", fields[4])
        yield number, fields[1], start, duration, fields[7]
    if others:
        warnings.warn(f"{path}: {len(others)} line(s) of another type than SPEAKER left out "
                      f"(the first: line {others[0]})", DataWarning, stacklevel=3)


def read_rttm(path: PathLike) -> Dict[str, Annotation]:
    """{uri: Annotation} of the SPEAKER lines of an RTTM file (in order of first line)."""
    annotations: Dict[str, Annotation] = {}
    for number, uri, start, duration, label in _rttm_turns(path):
        if uri not in annotations:
            annotations[uri] = Annotation(uri=uri)
        annotations[uri][Segment(start, start + duration), number] = label
    return annotations


def _uem_regions(path: PathLike) -> Iterator[Tuple[int, str, float, float]]:
    """(line number, uri, start_s, end_s) of every UEM line."""
    for number, fields in _lines(path):
        if len(fields) < 4:
            raise DataError(f"{path} line {number}: {len(fields)} fields; a UEM line is "
                            "uri channel start end")
        start = _seconds(path, number, "start", fields[2])
        end = _seconds(path, number, "end", fields[3])
        if end < start:
            raise DataError(f"{path} line {number}: end {end:g} s is before start {start:g} s")
        yield number, fields[0], start, end


def read_uem(path: PathLike) -> Dict[str, Timeline]:
    """{uri: Timeline} of the regions of a UEM file."""
    regions: Dict[str, List[Segment]] = {}
    for _, uri, start, end in _uem_regions(path):
        regions.setdefault(uri, []).append(Segment(start, end))
    return {uri: Timeline(segments, uri=uri) for uri, segments in regions.items()}


def unknown_uris(path: PathLike, listed: Sequence[str], kind: str = "rttm") -> List[str]:
    """URIs of the RTTM (kind "rttm") or UEM ("uem") file at `path` that are not in
    `listed`, in order of first line; every line is checked as read_rttm/read_uem do."""
    listed = set(listed)
    rows = _rttm_turns(path) if kind == "rttm" else _uem_regions(path)
    found: Dict[str, None] = {}
    for row in rows:
        if row[1] not in listed:
            found[row[1]] = None
    return list(found)


def unknown_uris_message(path: PathLike, uris: Sequence[str], where: str) -> str:
    """One line: the RTTM/UEM file at `path` names `uris` that are not in `where`."""
    shown = ", ".join(uris[:5]) + (f" and {len(uris) - 5} more" if len(uris) > 5 else "")
    return f"{path} has lines for {len(uris)} file(s) that are not in {where}: {shown} (ignored)"
