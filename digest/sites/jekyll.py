"""Jekyll's conventions: categories from the folders above ``_posts``, ``_drafts`` and other
``_`` folders skipped, ``_config.yml`` (url + baseurl, title, permalink, timezone), and Liquid's
``{% link %}`` / ``{% post_url %}`` tags resolved to the post's URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

POSTS_FOLDER = "_posts"


def skip_name(name: str) -> bool:
    """Jekyll reads no file or folder whose name starts with ``_`` (``_drafts``, ``_site``,
    ``_index.md``), except the posts folders themselves."""
    return name.startswith("_") and name != POSTS_FOLDER


def folder_categories(rel: str) -> list[str]:
    """``blog/_posts/2020-01-01-x.md`` -> ["blog"]: Jekyll's categories from the path."""
    parts = rel.split("/")[:-1]
    if POSTS_FOLDER not in parts:
        return []
    return [p for p in parts[: parts.index(POSTS_FOLDER)] if p]


def read_config(path: Path) -> dict[str, str]:
    """base_url (url + baseurl), name (title), permalink and timezone from ``_config.yml``."""
    data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        return {}
    out: dict[str, str] = {}
    url = data.get("url")
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        base = data.get("baseurl")
        out["base_url"] = url.rstrip("/") + (
            "/" + base.strip("/") if isinstance(base, str) and base.strip("/") else ""
        )
    for ours, theirs in (("name", "title"), ("permalink", "permalink"), ("timezone", "timezone")):
        if isinstance(data.get(theirs), str) and data[theirs].strip():
            out[ours] = data[theirs].strip()
    return out
