"""Hugo's conventions: ``+++`` TOML front matter, page bundles (``slug/index.md`` with its
``featured*`` image), ``draft``, ``url``, and the site config (``hugo.toml``/``config.toml``:
baseURL, title, permalinks)."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from digest.model import PostImage

_TOML_FRONT = re.compile(r"\A\+\+\+[ \t]*\n(.*?)\n\+\+\+[ \t]*(?:\n|\Z)", re.S)
_BUNDLE_IMAGE = re.compile(
    r"^(?:featured|cover|thumbnail|feature)[^/]*\.(?:png|jpe?g|gif|webp|avif|svg)$", re.I
)
CONFIG_NAMES = ("hugo.toml", "hugo.yaml", "hugo.yml", "hugo.json", "config.toml", "config.yaml", "config.yml")
# Hugo permalink tokens as digest.permalink's placeholders (:title there is the slug, dots kept).
_TOKENS = {
    ":filename": ":title",
    ":slugorfilename": ":title",
    ":slugorcontentbasename": ":title",
    ":contentbasename": ":title",
    ":slug": ":title",
    ":monthname": ":long_month",
    ":yearday": ":y_day",
}


class TomlFrontMatterError(ValueError):
    """The ``+++`` front matter is not valid TOML."""


def split_toml(text: str) -> tuple[dict[str, Any], str] | None:
    """(front matter, body) for a post that opens with ``+++``; None when it does not."""
    if not text.startswith("+++"):
        return None
    match = _TOML_FRONT.match(text)
    if match is None:
        raise TomlFrontMatterError("the front matter starts with +++ but has no closing +++ line")
    try:
        data = tomllib.loads(match.group(1))
    except tomllib.TOMLDecodeError as exc:
        raise TomlFrontMatterError(f"the +++ front matter is not valid TOML ({exc})") from None
    return data, text[match.end() :]


def is_bundle(rel: str) -> bool:
    """``news/0.60.0-relnotes/index.md``: a leaf bundle, named by its folder."""
    name = rel.rsplit("/", 1)[-1]
    return "/" in rel and name.rsplit(".", 1)[0] == "index"


def bundle_slug(rel: str) -> str:
    return rel.rsplit("/", 2)[-2]


def bundle_resource(folder: str, image: PostImage | None) -> PostImage | None:
    """A bundle's picture as a page resource: the front matter's image when it names a file in
    the bundle, else the bundle's ``featured*`` (or cover/thumbnail) file. A page resource's URL
    is marked ``./name``: it sits under the page's URL (summarize resolves it), where other
    image paths are the site's (digest.images resolves those)."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return image
    if image is not None:
        name = image.url.strip()
        if "/" not in name and name in names:
            return PostImage("./" + name, image.alt, image.width, image.height)
        return image
    found = next((name for name in names if _BUNDLE_IMAGE.match(name)), None)
    return PostImage("./" + found) if found else None


def read_config(path: Path, section: str = "") -> dict[str, str]:
    """base_url, name and permalink from a Hugo site config (TOML; YAML and JSON too)."""
    text = path.read_text(encoding="utf-8")
    data: Any
    if path.suffix == ".toml":
        data = tomllib.loads(text)
    elif path.suffix == ".json":
        import json

        data = json.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        return {}
    lowered = {str(k).lower(): v for k, v in data.items()}
    if "baseurl" not in lowered and "permalinks" not in lowered and "title" not in lowered:
        return {}  # not a Hugo config (digest's own config.toml has [site] instead)
    out: dict[str, str] = {}
    base = lowered.get("baseurl")
    if isinstance(base, str) and base.startswith(("http://", "https://")):
        out["base_url"] = base.rstrip("/")
    if isinstance(lowered.get("title"), str):
        out["name"] = lowered["title"]
    return {**out, **_permalinks(lowered.get("permalinks"), section)}


def _permalinks(value: Any, section: str) -> dict[str, str]:
    """``[permalinks] posts = "/:year/:month/:title/"`` for the section the posts live in."""
    if not isinstance(value, dict):
        return {}
    page = value.get("page")
    pages: dict[str, Any] = page if isinstance(page, dict) else value
    for name in (section, "posts", "post", "blog", "news", "articles"):
        pattern = pages.get(name) if name else None
        if isinstance(pattern, str):
            return {"permalink": convert_permalink(pattern, name)}
    return {}


def convert_permalink(pattern: str, section: str) -> str:
    for token, ours in sorted(_TOKENS.items(), key=lambda t: -len(t[0])):
        pattern = pattern.replace(token, ours)
    return pattern.replace(":sections", section).replace(":section", section)


def default_permalink(section: str) -> str:
    """Hugo's default URL for a page of a section: ``/news/<slug>/``."""
    return f"/{section}/:title/" if section else "/:title/"
