"""The parsed-post cache: one pickle per posts folder, written atomically, dropped when the
settings or the loader's code change."""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import digest.images
import digest.post_dates
import digest.posts
import digest.safe_yaml
import digest.sites.fields
import digest.sites.hugo
import digest.sites.jekyll
import digest.textclean

log = logging.getLogger("digest.posts")


def code_stamp() -> tuple[tuple[int, int], ...]:
    """Parsed posts depend on the loader's code: a changed loader must not reuse old results."""
    modules = (
        digest.posts,
        digest.post_dates,
        digest.images,
        digest.sites.fields,
        digest.sites.hugo,
        digest.sites.jekyll,
        digest.textclean,
        digest.safe_yaml,
    )
    stamps = []
    for module in modules:
        st = os.stat(str(module.__file__))
        stamps.append((st.st_size, st.st_mtime_ns))
    return tuple(stamps)


def cache_file(cache_dir: Path, folder: Path) -> Path:
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"posts-{key}.pickle"


def read_cache(cache_file: Path, settings: tuple[Any, ...]) -> dict[str, Any]:
    try:
        with open(cache_file, "rb") as f:
            data = pickle.load(f)
    except FileNotFoundError:
        return {}
    except Exception as exc:  # a truncated or foreign file: start again, it is only a cache
        log.info("%s: ignoring unreadable posts cache (%s)", cache_file, exc)
        return {}
    if not isinstance(data, dict) or data.get("settings") != settings:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def write_cache(cache_file: Path, settings: tuple[Any, ...], entries: dict[str, Any]) -> None:
    """Write to a temporary file and rename, so a crash never leaves half a cache."""
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=cache_file.name, suffix=".tmp", dir=cache_file.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                pickle.dump({"settings": settings, "entries": entries}, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, cache_file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        log.warning(
            "%s: cannot write the posts cache (%s); the next run reads every post again", cache_file, exc
        )
