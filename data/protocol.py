"""pyannote.database protocols: loading, and the files a protocol is built from.

    load_protocol("Synthetic.SpeakerDiarization.AV", ["db/database.yml"]) -> protocol
    protocol_sources(name, database_files) -> [Path]   yml files + lists/RTTM/UEM it names
    check_references(name, database_files, split) -> {RTTM/UEM path: [uris not in the list]}
                                                       (every line checked: data.references)

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


def check_references(name: str, files: Sequence[str], split: str) -> Dict[str, List[str]]:
    """Check every line of the split's RTTM and UEM files (data.references: DataError
    "FILE line N: ..." for a bad one) and return the URIs each names that the split's list
    does not, per file path."""
    from data.references import unknown_uris

    found: Dict[str, List[str]] = {}
    for yml in database_files(files):
        subset = _protocol_entry(name, yml).get(split)
        if not isinstance(subset, dict) or not isinstance(subset.get("uri"), str):
            continue
        lst = yml.parent / subset["uri"]
        if not lst.is_file():
            continue
        listed = lst.read_text(encoding="utf-8").split()
        for key, kind in (("annotation", "rttm"), ("annotated", "uem")):
            value = subset.get(key)
            if not isinstance(value, str) or "{" in value or not (yml.parent / value).is_file():
                continue
            extra = unknown_uris(yml.parent / value, listed, kind)
            if extra:
                found[str(yml.parent / value)] = extra
    return found


def database_yaml(protocol_name: str, splits, scope: str = "database") -> str:
    """database.yml text for a folder laid out as audio/{uri}.wav, lists/{split}.lst,
    rttm/{split}.rttm and uem/{split}.uem (paths relative to the yml); `protocol_name` is
    "Database.Task.Name", `scope` pyannote's speaker scope ("database" or "file")."""
    database, task, name = protocol_name.split(".")
    lines = ["Databases:", f"  {database}: audio/{{uri}}.wav", "", "Protocols:",
             f"  {database}:", f"    {task}:", f"      {name}:", f"        scope: {scope}"]
    for split in splits:
        lines += [f"        {split}:", f"          uri: lists/{split}.lst",
                  f"          annotation: rttm/{split}.rttm",
                  f"          annotated: uem/{split}.uem"]
    return "\n".join(lines) + "\n"
