"""The editor's note: an optional Markdown file per edition (``editions/2026-W02.md``).

It opens the email above the headlines, the way an editor's letter opens a magazine. The file
is written by the site's editors, but it is still Markdown made safe: raw HTML is shown as text
and only http(s) and mailto links are kept. Read through a small cache keyed by the file's size
and modification time, because a send builds one edition per category set.
"""

from __future__ import annotations

import re
from pathlib import Path

from markdown_it import MarkdownIt

from digest.config import Config
from digest.errors import ConfigError

_MD = MarkdownIt("commonmark", {"html": False, "typographer": False})
_MD.validateLink = lambda url: url.strip().lower().startswith(("https://", "http://", "mailto:"))  # type: ignore[method-assign]
_LINK = re.compile(r"\[([^\]\n]+)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_EMPHASIS = re.compile(r"(\*\*|__)(.+?)\1")
_FRONT_MATTER = re.compile(r"\A---\n.*?\n---\n", re.DOTALL)
_CACHE: dict[tuple[str, int, int], tuple[str, str]] = {}


def note_path(config: Config, edition_id: str) -> Path:
    """Where the note for ``edition_id`` lives: ``edition.notes`` (default ``editions/``)."""
    return config.path(config.edition.notes) / f"{edition_id}.md"


def load_note(config: Config, edition_id: str) -> tuple[str, str]:
    """The note as (safe HTML, plain text); ("", "") when the edition has none."""
    path = note_path(config, edition_id)
    try:
        st = path.stat()
    except OSError:
        return "", ""
    key = (str(path), st.st_size, st.st_mtime_ns)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    try:
        source = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: the editor's note is not UTF-8 text ({exc.reason} at byte {exc.start}). "
            "Save it as UTF-8, or delete it to send the edition without a note."
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the editor's note ({exc.strerror}).") from None
    note = render_note(source)
    if len(_CACHE) > 64:
        _CACHE.clear()
    _CACHE[key] = note
    return note


def render_note(source: str) -> tuple[str, str]:
    """Markdown -> (safe HTML, plain text). A front matter block, if any, is left out."""
    text = _FRONT_MATTER.sub("", source.replace("\r\n", "\n").lstrip("\ufeff")).strip()
    if not text:
        return "", ""
    html = _MD.render(text).strip()
    plain = _LINK.sub(lambda m: f"{m.group(1)} <{m.group(2)}>", text)
    plain = _EMPHASIS.sub(r"\2", plain)
    return html, plain
