"""Fetching released weights through huggingface_hub: cache, revision pinning, offline mode."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from ..exceptions import WeightsNotAvailableError
from .registry import ModelEntry

logger = logging.getLogger(__name__)


class LicenseWarning(UserWarning):
    """Shown once per process for each license that restricts use (e.g. non-commercial)."""


_warned_licenses: set[str] = set()

_LICENSE_TEXT = {
    "cc-by-nc-sa-4.0": "CC BY-NC-SA 4.0: non-commercial use only, with attribution, "
                       "derivatives under the same license",
}


def license_notice(entry: ModelEntry) -> str:
    """One sentence: the license of ``entry``'s weights and the paper to cite."""
    text = _LICENSE_TEXT.get(entry.license, entry.license)
    return f"The weights of {entry.name} (and the other SurgeNet releases) are licensed {text}. Cite: {entry.paper}."


def warn_license(entry: ModelEntry) -> None:
    """Warn, once per license and process, that the weights carry a restrictive license."""
    if entry.license in _warned_licenses or not entry.license.startswith("cc-by-nc"):
        return
    _warned_licenses.add(entry.license)
    warnings.warn(license_notice(entry), LicenseWarning, stacklevel=3)


def download_weights(entry: ModelEntry, revision: str | None = None, cache_dir: str | Path | None = None,
                     force_download: bool = False, filename: str | None = None) -> Path:
    """The local path of ``entry``'s released file, downloaded into the Hugging Face cache if needed.

    With ``HF_HUB_OFFLINE=1`` only the cache is used; nothing cached raises
    :class:`WeightsNotAvailableError` that says how to provide the file.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    revision = revision or entry.revision
    filename = filename or entry.filename
    where = f"{entry.repo_id}/{filename} (revision {revision})"
    try:
        path = hf_hub_download(entry.repo_id, filename, revision=revision, cache_dir=cache_dir,
                               force_download=force_download)
    except LocalEntryNotFoundError as exc:
        raise WeightsNotAvailableError(
            f"weights of {entry.name} are not in the Hugging Face cache and cannot be downloaded "
            f"(offline or no network): {where}. Fix: run `surgenet download {entry.name}` on a "
            f"machine with network and copy the cache (HF_HOME), or download the file yourself and "
            f"pass weights=PATH, or use pretrained=False for random weights."
        ) from exc
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as exc:
        raise WeightsNotAvailableError(
            f"{where} was not found on the Hub ({type(exc).__name__}). Check the revision, or pass "
            f"weights=PATH to a local copy."
        ) from exc
    logger.info("weights of %s: %s", entry.name, path)
    return Path(path)


def cached_weights_path(entry: ModelEntry, revision: str | None = None,
                        cache_dir: str | Path | None = None) -> Path | None:
    """The cached file of ``entry`` if it is in the Hugging Face cache, else ``None`` (no network)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(entry.repo_id, entry.filename, cache_dir=cache_dir,
                                   revision=revision or entry.revision)
    return Path(found) if isinstance(found, str) else None
