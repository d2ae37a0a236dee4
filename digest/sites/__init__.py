"""The site a posts folder belongs to (Jekyll or Hugo), and what its own config says.

A Jekyll site's ``_config.yml`` and a Hugo site's ``hugo.toml``/``config.toml`` sit in the site
root, the folder that holds ``_posts`` or ``content/``. Their base URL, title, permalink and time
zone are used where digest's config.toml leaves the key at its default, and each value used is
told once ("site.base_url from _config.yml").
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digest.config import Config, SiteConfig
from digest.model import Post
from digest.sites import hugo, jekyll

log = logging.getLogger("digest.sites")
_TOLD: set[tuple[str, str]] = set()
_DEFAULTS = SiteConfig()


def find_site_config(folder: Path) -> Path | None:
    """The site config in ``folder`` or up to four folders above it (content/en/blog/_posts)."""
    here = folder.resolve()
    for candidate in [here, *list(here.parents)[:4]]:
        if (candidate / "_config.yml").is_file():
            return candidate / "_config.yml"
        for name in hugo.CONFIG_NAMES:
            for path in (candidate / name, candidate / "config" / "_default" / name):
                if path.is_file() and _is_hugo(path):
                    return path
    return None


def _is_hugo(path: Path) -> bool:
    try:
        return bool(hugo.read_config(path))
    except Exception:  # a config we cannot read is not ours to fix; digest's own defaults stand
        return False


def site_values(folder: Path) -> tuple[Path | None, dict[str, str]]:
    """(config file, values it gives) for the site ``folder`` belongs to."""
    path = find_site_config(folder)
    if path is None:
        return None, {}
    try:
        if path.name == "_config.yml":
            values = jekyll.read_config(path)
        else:
            section = _section(folder, path.parent)
            values = hugo.read_config(path, section)
            if "permalink" not in values:
                values["permalink"] = hugo.default_permalink(section)
    except Exception as exc:
        log.warning("%s: cannot read the site config (%s); using digest's settings only", path, exc)
        return path, {}
    return path, values


def _section(folder: Path, root: Path) -> str:
    """The Hugo section the posts are in: ``content/blog`` or, per language, ``content/en/blog``."""
    if root.name == "_default" and root.parent.name == "config":
        root = root.parent.parent
    try:
        parts = folder.resolve().relative_to(root.resolve() / "content").parts
    except ValueError:
        return folder.resolve().name
    if len(parts) > 1 and re.fullmatch(r"[a-z]{2}(?:-[a-zA-Z]{2,4})?", parts[0]):
        parts = parts[1:]  # a language's content folder
    return parts[0] if parts else ""


def with_site_config(config: Config, folder: Path | None = None) -> Config:
    """``config`` with the site's own values where config.toml left a key at its default."""
    where = folder or config.posts_path
    if not Path(where).is_dir():
        return config
    path, values = site_values(Path(where))
    if path is None or not values:
        return config
    changes: dict[str, str] = {}
    for key, value in values.items():
        if getattr(config.site, key) != getattr(_DEFAULTS, key) or value == getattr(config.site, key):
            continue
        if key == "timezone":
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                continue
        changes[key] = value
        if (str(path), key) not in _TOLD:
            _TOLD.add((str(path), key))
            log.warning("site.%s from %s: %s", key, path.name, value)
    if not changes:
        return config
    return dataclasses.replace(config, site=dataclasses.replace(config.site, **changes))


def _key(path: str) -> str:
    """A post's name as links give it: the file stem, or a bundle's folder for ``index.md``."""
    parts = [p for p in path.strip().strip("/").split("/") if p]
    if not parts:
        return ""
    stem = re.sub(r"\.(?:md|markdown|mdx|html?)$", "", parts[-1], flags=re.I)
    return parts[-2] if stem in ("index", "_index") and len(parts) > 1 else stem


def link_resolver(posts: Sequence[Post], url_of: Callable[[Post], str]) -> Callable[[str, str], str | None]:
    """Resolve ``{% post_url x %}``, ``{% link _posts/x.md %}`` and Hugo ``ref "x"`` to a post's URL.

    The index by file stem is built on first use; a URL is computed only for a post linked to.
    """
    index: dict[str, Post] = {}

    def resolve(kind: str, target: str) -> str | None:
        if not index:
            for post in posts:
                index.setdefault(_key(post.path), post)
        found = index.get(_key(target.split("#", 1)[0]))
        return url_of(found) if found is not None else None

    return resolve
