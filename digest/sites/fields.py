"""Front-matter fields that Jekyll themes and Hugo sites spell in several ways: the author.

(The image is digest.images' job.)
"""

from __future__ import annotations

from typing import Any

AUTHOR_KEYS = ("author", "authors")


def author(meta: dict[str, Any]) -> str | None:
    """``author: Ann`` / ``authors: [Ann, Bo]`` / ``author: {name: Ann}`` -> "Ann, Bo"."""
    names: list[str] = []
    for key in AUTHOR_KEYS:
        names.extend(_names(meta.get(key)))
    unique = list(dict.fromkeys(n for n in names if n))
    return ", ".join(unique[:6]) or None


def _names(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value.strip()]
    if isinstance(value, dict):
        name = value.get("name") or value.get("display_name")
        return [str(name).strip()] if name else []
    if isinstance(value, list | tuple):
        return [n for item in value for n in _names(item)]
    return []
