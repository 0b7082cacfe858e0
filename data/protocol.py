"""pyannote.database protocols: loading, and the files a protocol is built from.

    load_protocol("Synthetic.SpeakerDiarization.AV", ["db/database.yml"]) -> protocol
    protocol_sources(name, database_files) -> [Path]   yml files + lists/RTTM/UEM it names
    check_rttm_uris(name, database_files, split) -> {rttm path: [uris not in the list]}

Database files come from the argument, else from PYANNOTE_DATABASE_CONFIG (several
separated by ';' or os.pathsep). Files are preprocessed so that file["audio"] is a path
(pyannote.database's FileFinder, which also accepts non-ASCII URIs).
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Dict, List, Sequence

from pyannote.database import FileFinder, registry


class ProtocolError(ValueError):
    """A protocol that cannot be loaded or a database file that is wrong."""


def database_files(files: Sequence[str] = ()) -> List[Path]:
    """The database.yml files to use: `files`, else PYANNOTE_DATABASE_CONFIG's."""
    if files:
        paths = [Path(f) for f in files]
    else:
        value = os.environ.get("PYANNOTE_DATABASE_CONFIG", "")
        paths = [Path(p) for p in re.split(rf"[;{re.escape(os.pathsep)}]", value) if p]
    for path in paths:
        if not path.is_file():
            raise ProtocolError(f"database file {path} does not exist")
    return [p.resolve() for p in paths]


def load_protocol(name: str, database_files_: Sequence[str] = ()):
    """The pyannote.database protocol `name` (e.g. "Synthetic.SpeakerDiarization.AV")."""
    for path in database_files(database_files_):
        try:
            with warnings.catch_warnings():  # reloading a database file is intended
                warnings.filterwarnings("ignore", message="Replacing existing")
                registry.load_database(path)
        except Exception as error:  # yaml or schema errors: name the file
            raise ProtocolError(f"cannot load database file {path}: {error}") from error
    try:
        return registry.get_protocol(name, preprocessors={"audio": FileFinder()})
    except Exception as error:
        sources = ", ".join(str(p) for p in database_files(database_files_)) or "none"
        raise ProtocolError(
            f"unknown protocol {name!r} (database files: {sources}; pass --database FILE "
            f"or set PYANNOTE_DATABASE_CONFIG): {error}") from error


def _protocol_entry(name: str, yml: Path) -> Dict:
    """The yml's entry for protocol `name` ({split: {uri:, annotation:, annotated:}}) or {}."""
    import yaml

    try:
        content = yaml.safe_load(yml.read_text(encoding="utf-8")) or {}
        database, task, protocol = name.split(".")
        return content["Protocols"][database][task][protocol] or {}
    except (KeyError, TypeError, ValueError, yaml.YAMLError):
        return {}


def protocol_sources(name: str, files: Sequence[str] = ()) -> List[Path]:
    """The yml files and every list/RTTM/UEM file they name for protocol `name`."""
    sources: List[Path] = []
    for yml in database_files(files):
        sources.append(yml)
        for subset in _protocol_entry(name, yml).values():
            if isinstance(subset, dict):
                for value in subset.values():
                    if isinstance(value, str):
                        sources.append((yml.parent / value).resolve())
    return sources


def check_rttm_uris(name: str, files: Sequence[str], split: str) -> Dict[str, List[str]]:
    """URIs that the split's RTTM mentions but its list does not, per RTTM path."""
    found: Dict[str, List[str]] = {}
    for yml in database_files(files):
        subset = _protocol_entry(name, yml).get(split)
        if not isinstance(subset, dict) or not all(
                isinstance(subset.get(k), str) for k in ("uri", "annotation")):
            continue
        lst, rttm = yml.parent / subset["uri"], yml.parent / subset["annotation"]
        if not (lst.is_file() and rttm.is_file()) or "{" in str(rttm):
            continue
        listed = set(lst.read_text(encoding="utf-8").split())
        extra = []
        for line in rttm.read_text(encoding="utf-8").splitlines():
            fields = line.split()
            if len(fields) > 1 and fields[0] == "SPEAKER" and fields[1] not in listed:
                if fields[1] not in extra:
                    extra.append(fields[1])
        if extra:
            found[str(rttm)] = extra
    return found
