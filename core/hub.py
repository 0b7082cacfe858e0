"""Where a checkpoint comes from: a local file, a folder, or a Hugging Face Hub repo.

`resolve_checkpoint("pyannote/segmentation-3.0@REV", token=...)` downloads once into the
Hugging Face cache with `huggingface_hub.hf_hub_download`; the repo is gated, so a token
comes from the argument or `HF_TOKEN`. When neither the Hub nor its cache can give the file
(offline, gated without a token, unreachable), a Hub id that core/weights.py knows, given
without a revision, falls back to its verified copy in the weights cache (`run.py weights`).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Optional, Sequence, Tuple

CHECKPOINT_FILENAMES = ("pytorch_model.bin", "model.safetensors")
log = logging.getLogger(__name__)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+(@[\w.\-/]+)?$")


def split_revision(checkpoint: str, revision: Optional[str] = None) -> Tuple[str, Optional[str]]:
    """'owner/name@rev' -> ('owner/name', 'rev'); an explicit `revision` must agree."""
    if "@" in checkpoint:
        repo_id, _, embedded = checkpoint.partition("@")
        if revision is not None and revision != embedded:
            raise ValueError(
                f"checkpoint {checkpoint!r} names revision {embedded!r} but revision={revision!r}")
        return repo_id, embedded
    return checkpoint, revision


def resolve_checkpoint(checkpoint: str, revision: Optional[str] = None,
                       token: Optional[str] = None,
                       filenames: Sequence[str] = CHECKPOINT_FILENAMES) -> str:
    """Local path of the checkpoint file named by `checkpoint`.

    A file is returned as is; a folder must hold one of `filenames` (first found wins);
    anything else that looks like 'owner/name[@revision]' is fetched from the Hub.
    """
    path = Path(os.path.expanduser(str(checkpoint)))
    if path.is_file():
        return str(path)
    if path.is_dir():
        for filename in filenames:
            if (path / filename).is_file():
                return str(path / filename)
        raise FileNotFoundError(
            f"{path}: folder holds none of {', '.join(filenames)}")
    if not HUB_ID.match(str(checkpoint)):
        raise FileNotFoundError(
            f"checkpoint {checkpoint!r} is neither a file, a folder, nor a Hub id like "
            "'pyannote/segmentation-3.0'")
    try:
        return _download(str(checkpoint), revision, token, filenames)
    except (ConnectionError, PermissionError, FileNotFoundError) as error:
        return _from_weights_cache(str(checkpoint), revision, filenames, error)


def _from_weights_cache(checkpoint: str, revision: Optional[str], filenames: Sequence[str],
                        error: Exception) -> str:
    """The weights cache's verified copy of a known Hub file, else `error` raised again
    (with a hint to `run.py weights` when the file is known but not fetched yet)."""
    from core.weights import KNOWN, cached

    repo_id, revision = split_revision(checkpoint, revision)
    names = [entry.name for entry in KNOWN.values()
             if entry.hub is not None and entry.hub[0] == repo_id and entry.hub[1] in filenames]
    if revision is not None or not names:
        raise error
    path = cached(names[0])
    if path is not None:
        log.info("%s: the Hub cannot give it (%s); using %s", repo_id, type(error).__name__,
                 path)
        return str(path)
    raise type(error)(f"{error}; or fetch it once into the weights cache: "
                      f"python run.py weights {names[0]} (or make weights)") from error


def _download(checkpoint: str, revision: Optional[str], token: Optional[str],
              filenames: Sequence[str]) -> str:
    import huggingface_hub
    from huggingface_hub.utils import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    repo_id, revision = split_revision(checkpoint, revision)
    token = token or os.environ.get("HF_TOKEN") or None
    missing = []
    for filename in filenames:
        try:
            return huggingface_hub.hf_hub_download(
                repo_id=repo_id, filename=filename, revision=revision, token=token)
        except LocalEntryNotFoundError as error:
            raise ConnectionError(
                f"cannot download {filename} of {repo_id}: the Hub is out of reach and it is "
                "not in the local Hugging Face cache; download it on a connected machine and "
                f"pass the local path instead ({error})") from error
        except EntryNotFoundError:
            missing.append(filename)
        except GatedRepoError as error:
            raise PermissionError(
                f"{repo_id} is gated: accept its conditions on huggingface.co and pass a token "
                f"(--hf-token or HF_TOKEN); {error}") from error
        except RepositoryNotFoundError as error:
            raise FileNotFoundError(
                f"{repo_id}: no such Hub repo, or it is private and no valid token was given"
            ) from error
    raise FileNotFoundError(f"{repo_id}@{revision or 'main'} holds none of {', '.join(missing)}")
