"""Front-matter fields that Jekyll themes and Hugo sites spell in several ways: author and image."""

from __future__ import annotations

from typing import Any

IMAGE_KEYS = ("image", "images", "feature_image", "featured_image", "cover", "thumbnail", "og_image")
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


def image(meta: dict[str, Any]) -> str | None:
    """The post's picture: the first of ``image``, ``images[0]``, ``feature_image``, ``cover``...

    ``cover`` and ``image`` may be tables (``{image: x.png}``, ``{path: ..}``, ``{url: ..}``).
    """
    for key in IMAGE_KEYS:
        found = _image_value(meta.get(key))
        if found:
            return found
    return None


def _image_value(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, list | tuple):
        for item in value:
            found = _image_value(item)
            if found:
                return found
    if isinstance(value, dict):
        for key in ("image", "src", "path", "url", "feature", "featured"):
            found = _image_value(value.get(key))
            if found:
                return found
    return None
