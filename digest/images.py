"""A post's picture: read from front matter, made safe for an email (absolute https or nothing).

Blogs name it differently: Jekyll (jekyll-seo-tag) ``image`` (a path, or a table with ``path``,
``alt``, ``width``, ``height``), Hugo ``images`` (a list; the first wins), Ghost
``feature_image`` (with ``feature_image_alt``), many themes ``cover`` (a path, or a table with
``image`` and ``alt``). An image is never required: anything odd is simply no image.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from digest.model import PostImage

# In the order a post's own intent is most likely: a dedicated image key before a list.
IMAGE_KEYS = ("image", "feature_image", "cover", "images")
ALT_KEYS = ("image_alt", "feature_image_alt", "cover_alt")
# The front matter keys posts.py must build (it skips every key it does not use).
FRONT_MATTER_KEYS = frozenset((*IMAGE_KEYS, *ALT_KEYS))


def image_from_front_matter(meta: Mapping[str, Any]) -> PostImage | None:
    """The post's picture as written, or None. Never raises: a picture is decoration."""
    lowered = {str(k).lower(): v for k, v in meta.items()}
    for key in IMAGE_KEYS:
        image = _image(lowered.get(key))
        if image is not None:
            if not image.alt:
                alt = next((_text(lowered.get(k)) for k in ALT_KEYS if _text(lowered.get(k))), "")
                image = PostImage(image.url, alt or "", image.width, image.height)
            return image
    return None


def absolute_image(image: PostImage | None, base_url: str) -> PostImage | None:
    """``image`` with an absolute https URL (relative ones resolved against the site), or None.

    Email clients block or warn about http images, and a ``javascript:`` or ``data:`` source
    has no place in an email, so anything but https is dropped.
    """
    if image is None:
        return None
    url = image.url.strip()
    if url.startswith("//"):
        url = "https:" + url
    elif not urlsplit(url).scheme:
        # As jekyll-seo-tag's absolute_url does: under the site's address, base path included.
        url = base_url.rstrip("/") + "/" + url.lstrip("/")
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc or any(c in url for c in "\"'<> \n\t"):
        return None
    return PostImage(url, image.alt, image.width, image.height)


def _image(value: Any) -> PostImage | None:
    if isinstance(value, list | tuple):
        return next((img for img in map(_image, value) if img is not None), None)
    if isinstance(value, Mapping):
        url = _text(value.get("path") or value.get("url") or value.get("src") or value.get("image"))
        if not url:
            return None
        return PostImage(
            url,
            _text(value.get("alt")) or "",
            _dimension(value.get("width")),
            _dimension(value.get("height")),
        )
    url = _text(value)
    return PostImage(url) if url else None


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return " ".join(value.split())
    return None


def _dimension(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().removesuffix("px").isdigit():
        value = int(value.strip().removesuffix("px"))
    return value if isinstance(value, int) and 0 < value <= 10_000 else None
