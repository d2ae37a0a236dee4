"""Read a folder of Markdown posts into `Post`s, once, with every oddity of real sites normalised.

Real Jekyll folders hold byte-order marks, CRLF, empty files, Windows-1252 text, YAML that does not
parse, dates in five spellings (and impossible offsets), categories as strings or lists. Each file
either becomes a `Post` or a `Skip` with a reason a site owner understands; nothing here raises for
one bad post. A cache keyed by path, size and mtime makes repeated runs cheap.

Rules where Jekyll and the issue leave room (documented in the report and the tests):
- A date comes from front matter (``date``), else from a ``YYYY-MM-DD-slug`` file name, else the
  file is skipped ("no date"): that is how listing pages such as ``blog/index.md`` drop out.
- Naive dates are in the site time zone; every ``Post.date`` is converted to the site time zone.
- An offset beyond UTC-12/UTC+14 cannot exist; the time is read as site-local, with a warning.
- A missing title is made from the slug the way Jekyll does (``hello-world`` -> ``Hello World``).
- ``category`` (singular) is one category even with spaces, as in Jekyll; ``categories`` as a
  string is split on commas if it has any, else on spaces. Both keys may be used together.
- ``published: false`` posts are kept with ``published=False``; the selector never shows them.
- Hidden files and folders (a leading ``.``) are ignored, like other extensions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from frontmatter.default_handlers import YAMLHandler

from digest.config import category_key
from digest.errors import ConfigError, PostError
from digest.images import FRONT_MATTER_KEYS, image_from_front_matter
from digest.model import LoadResult, Post, Skip
from digest.post_dates import _DATE_TEXT as DATE_TEXT
from digest.post_dates import Notice, file_date, parse_date_text, post_date
from digest.safe_yaml import FrontMatterLimitError, SafeLoader  # aliases, nesting, size bounded
from digest.sites import fields, hugo, jekyll
from digest.textclean import clean_post_fields, clean_post_text

__all__ = ["load_posts", "parse_date_text", "parse_post"]

log = logging.getLogger("digest.posts")

DEFAULT_EXTENSIONS = (".md", ".markdown", ".mdx")
DEFAULT_SEPARATOR = "<!--more-->"
CACHE_VERSION = 2
# A file changed this close to the scan may change again within the same mtime tick (the "racy
# git" problem): such cache entries are re-checked by content hash on the next run.
_RACY_NS = 2_000_000_000

# Keys whose plain scalars stay text exactly as written: YAML 1.1 would make `title: no` False,
# `title: 1.10` 1.1 and `slug: 12:30` 750.
_TEXT_KEYS = frozenset(
    {"title", "slug", "category", "categories", "excerpt", "excerpt_separator", "permalink"}
    | {"source_url", "source_site", "author", "authors", "url", "summary", "description"}
    | FRONT_MATTER_KEYS
)
_USED_KEYS = _TEXT_KEYS | {"date", "published", "draft"}
_STR_TAG = "tag:yaml.org,2002:str"
_FILE_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})-(.+)$")
_MORE = re.compile(r"<!--\s*more\s*-->", re.IGNORECASE)
_FALSE_WORDS = frozenset({"false", "no", "off", "0", "n"})


class _Handler(YAMLHandler):
    """python-frontmatter's YAML handler, building only the keys a post uses.

    Text keys keep their text (see _TEXT_KEYS); other keys (tags, wordpress_id, ...) are never
    constructed, which halves the cost of a cold load.
    """

    def load(self, fm: str, **kwargs: object) -> Any:
        simple = _simple_front_matter(fm)
        if simple is not None:
            return simple
        loader = SafeLoader(fm)
        try:
            node = loader.get_single_node()
            if node is None:
                return {}
            if isinstance(node, yaml.MappingNode):
                kept = []
                for key, value in node.value:
                    name = key.value.lower() if isinstance(key, yaml.ScalarNode) else ""
                    if name in _USED_KEYS:
                        if name in _TEXT_KEYS:
                            _keep_text(value)
                        kept.append((key, value))
                node.value = kept
            return loader.construct_document(node)
        finally:
            loader.dispose()


def _keep_text(node: yaml.Node) -> None:
    if isinstance(node, yaml.ScalarNode):
        if not node.style and node.value not in ("", "~", "null", "Null", "NULL"):
            node.tag = _STR_TAG
    elif isinstance(node, yaml.SequenceNode):
        for child in node.value:
            _keep_text(child)


_HANDLER = _Handler()

# --- a fast path for the front matter nearly every post has ---------------------------------------
# YAML costs about 0.3 ms a post, most of a cold load. Front matter made only of `key: value`
# lines, `- item` lists and `[a, b]` lists is read here instead; anything else (block scalars,
# nested maps, anchors, escapes, tabs, comments after values) goes to YAML. The result must be
# what the YAML path gives after _keep_text: tests compare both on every fixture.
# One line of simple front matter: `key: value` (groups 1, 2), `- item` (group 3), or a blank or
# comment line (no group). One regex per line: this loop is most of a cold load.
_SIMPLE_LINE = re.compile(r"(?:([A-Za-z_][\w.-]*):(?:[ ]+(.*))?|[ ]*-[ ]+(.*)|[ ]*(?:#.*)?)$")
_PLAIN_BAD_START = frozenset("[]{}&*!|>%@`#,?:-'\"")
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})


class _NotSimple(Exception):
    """The front matter needs the real YAML parser."""


def _simple_scalar(raw: str) -> str | None:
    """One scalar's text if it is plain or simply quoted, the same as YAML would read it."""
    value = raw.rstrip(" ")
    if not value:
        return None
    first = value[0]
    if first == '"':
        inner = value[1:-1]
        if len(value) < 2 or value[-1] != '"' or '"' in inner or "\\" in inner:
            raise _NotSimple
        return inner
    if first == "'":
        inner = value[1:-1]
        if len(value) < 2 or value[-1] != "'" or "'" in inner:
            raise _NotSimple
        return inner
    if first in _PLAIN_BAD_START or ": " in value or " #" in value or value.endswith(":"):
        raise _NotSimple
    return None if value in _NULLS else value


def _simple_list(raw: str) -> list[str | None]:
    inner = raw.rstrip(" ")[1:-1]
    if not raw.rstrip(" ").endswith("]") or any(c in inner for c in "[]{}\"'#"):
        raise _NotSimple
    if not inner.strip():
        return []
    return [_simple_scalar(part.strip()) for part in inner.split(",")]


class _BlockList(list):  # type: ignore[type-arg]
    """The items of a `key:` followed by `- item` lines (null in YAML when there are none)."""


def _simple_front_matter(fm: str) -> dict[str, Any] | None:
    """The used keys of simple front matter as YAML would give them, or None to use YAML."""
    if "\t" in fm:
        return None
    result: dict[str, Any] = {}
    current: _BlockList | None = None  # the list that `- item` lines add to
    try:
        for line in fm.split("\n"):
            match = _SIMPLE_LINE.match(line)
            if match is None:
                return None
            key, raw, item = match.groups()
            if item is not None:
                if current is None:
                    return None
                current.append(_simple_scalar(item))
                continue
            if key is None:
                continue  # blank or comment
            raw = raw or ""
            value: Any
            if not raw.strip():
                value = current = _BlockList()
            else:
                current = None
                value = _simple_list(raw) if raw.startswith("[") else _simple_scalar(raw)
            name = key.lower()
            if name not in _USED_KEYS:
                continue
            typed = name not in _TEXT_KEYS and value is not None
            if typed and (not isinstance(value, str) or not _simple_typed_ok(name, value)):
                return None
            result[key] = value
    except _NotSimple:
        return None
    return {k: (None if isinstance(v, _BlockList) and not v else v) for k, v in result.items()}


def _simple_typed_ok(name: str, value: str) -> bool:
    """Only values whose YAML reading we mirror exactly: dates as text, and published flags."""
    if name == "date":
        if DATE_TEXT.match(value) is None:
            return False
        try:
            parse_date_text(value)  # YAML refuses impossible dates (month 13) outright
        except ValueError:
            return False
        return True
    return value.lower() in {"true", "false", "yes", "no", "on", "off"}  # published, draft


@dataclass
class _Entry:
    """One file's cached outcome: the Post or the Skip, and the warnings it logged."""

    size: int
    mtime_ns: int
    content_hash: str
    result: Post | Skip
    notices: tuple[Notice, ...]
    racy: bool = False


def load_posts(
    folder: Path,
    *,
    tz: ZoneInfo,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    excerpt_separator: str = DEFAULT_SEPARATOR,
    cache_dir: Path | None = None,
) -> LoadResult:
    """Read every post under ``folder`` (sub-folders too, in sorted order); never fails on one post.

    Every skip is logged as a warning on ``digest.posts`` and returned in ``skipped``. With
    ``cache_dir``, unchanged files (same size and mtime) come from the cache instead of YAML.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(
            f"{folder}: posts folder not found. Check posts.folder in config.toml or the --posts option."
        )
    from digest import posts_cache  # it stamps this module's code: imported late, no circle

    exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    settings = (CACHE_VERSION, tz.key, excerpt_separator, posts_cache.code_stamp())
    cache_file = posts_cache.cache_file(cache_dir, folder) if cache_dir is not None else None
    old = posts_cache.read_cache(cache_file, settings) if cache_file else {}
    scan_ns = time.time_ns()
    entries: dict[str, _Entry] = {}
    changed = len(old) == 0
    for rel, path, st in _scan(folder, exts):
        entry = old.get(rel)
        if entry is not None and entry.size == st.st_size and entry.mtime_ns == st.st_mtime_ns:
            if entry.racy:
                entry = _verify(entry, path, rel, tz, excerpt_separator)
                changed = True
        else:
            entry = None
        if entry is None:
            entry = _parse_file(path, rel, st, tz, excerpt_separator)
            changed = True
        entry.racy = scan_ns - entry.mtime_ns < _RACY_NS
        entries[rel] = entry
    if len(entries) != len(old):
        changed = True

    posts: list[Post] = []
    skipped: list[Skip] = []
    for rel, entry in entries.items():
        for level, message in entry.notices:
            log.log(level, "%s: %s", rel, message)
        if isinstance(entry.result, Skip):
            log.warning("%s: skipped: %s", rel, entry.result.reason)
            skipped.append(entry.result)
        else:
            posts.append(entry.result)
    if cache_file is not None and changed:
        posts_cache.write_cache(cache_file, settings, entries)
    return LoadResult(posts=tuple(posts), skipped=tuple(skipped))


def parse_post(
    raw: bytes,
    rel: str,
    *,
    tz: ZoneInfo,
    excerpt_separator: str = DEFAULT_SEPARATOR,
    content_hash: str | None = None,
) -> tuple[Post, tuple[Notice, ...]]:
    """Turn one file's bytes into a Post and what is worth telling the site owner about it.

    Raises PostError (with a reason in plain words) when the file cannot be used as a post.
    """
    warnings: list[Notice] = []
    if not raw.strip():
        raise PostError(rel, "empty file")
    text = _decode(raw, warnings)
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    text = clean_post_text(text, warnings)  # no stage sees a character email cannot carry
    meta, body = _split(text, rel)
    stem = rel.rsplit("/", 1)[-1]
    stem = stem[: stem.rfind(".")] if "." in stem else stem
    name_match = _FILE_DATE.match(stem)
    name_date = file_date(name_match, tz)

    when = post_date(meta.get("date"), name_date, tz, rel, warnings)
    if hugo.is_bundle(rel) and not meta.get("slug"):
        stem = hugo.bundle_slug(rel)  # a page bundle is named by its folder
        name_match = _FILE_DATE.match(stem)
    slug = _text(meta.get("slug")) or (name_match.group(4) if name_match and name_date else stem)
    title = _text(meta.get("title")) or _titleize(slug)
    excerpt = (
        _text(meta.get("excerpt"))
        or _text(meta.get("summary"))
        or _excerpt(body, meta.get("excerpt_separator"), excerpt_separator)
    )
    post = Post(
        path=rel,
        title=title,
        date=when,
        categories=_categories(meta, jekyll.folder_categories(rel)),
        body=body,
        slug=slug,
        excerpt=excerpt,
        published=_published(meta.get("published", True)) and not _flag(meta.get("draft")),
        source_url=_text(meta.get("source_url")),
        source_site=_text(meta.get("source_site")),
        permalink=_text(meta.get("permalink")) or _text(meta.get("url")),  # Hugo spells it url
        content_hash=content_hash or hashlib.sha256(raw).hexdigest(),
        author=fields.author(meta),
        image=image_from_front_matter(meta),
        description=_text(meta.get("description")),
    )
    post = clean_post_fields(post, warnings)  # YAML escapes make characters too; categories capped
    return post, tuple(warnings)


# --- reading -------------------------------------------------------------------------------------


def _scan(folder: Path, exts: tuple[str, ...]) -> Iterator[tuple[str, str, os.stat_result]]:
    """Post files under folder, sorted by relative path; hidden names and symlinked folders skipped.

    Paths stay strings (``os.DirEntry.path``): a warm load stats every file and reads none, and a
    Path object per file was a third of its time.
    """
    found: list[tuple[str, str, os.stat_result]] = []
    stack = [(str(folder), "")]
    while stack:
        where, prefix = stack.pop()
        try:
            it = os.scandir(where)
        except OSError as exc:
            log.warning("%s: cannot list folder (%s)", where, exc.strerror or exc)
            continue
        with it:
            for entry in it:
                if entry.name.startswith(".") or jekyll.skip_name(entry.name):
                    continue  # hidden; Jekyll's _drafts, _site, _includes; Hugo's _index.md
                rel = prefix + entry.name
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((entry.path, rel + "/"))
                    elif entry.name.lower().endswith(exts) and entry.is_file():
                        found.append((rel, entry.path, entry.stat()))
                except OSError as exc:  # a dangling symlink, a file removed mid-scan
                    log.warning("%s: cannot read (%s)", rel, exc.strerror or exc)
    found.sort(key=lambda item: item[0])
    return iter(found)


def _read_bytes(path: str | Path, rel: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise PostError(rel, f"cannot be read ({exc.strerror or exc})") from None


def _parse_file(path: str | Path, rel: str, st: os.stat_result, tz: ZoneInfo, separator: str) -> _Entry:
    try:
        raw = _read_bytes(path, rel)
    except PostError as exc:
        return _Entry(st.st_size, st.st_mtime_ns, "", Skip(rel, exc.reason), ())
    entry = _entry_from_bytes(raw, rel, st.st_size, st.st_mtime_ns, tz, separator)
    post = entry.result
    if isinstance(post, Post) and hugo.is_bundle(rel):
        image = hugo.bundle_resource(os.path.dirname(path), post.image)
        if image != post.image:
            entry.result = dataclasses.replace(post, image=image)
    return entry


def _entry_from_bytes(raw: bytes, rel: str, size: int, mtime_ns: int, tz: ZoneInfo, separator: str) -> _Entry:
    digest = hashlib.sha256(raw).hexdigest()
    try:
        post, notices = parse_post(raw, rel, tz=tz, excerpt_separator=separator, content_hash=digest)
    except PostError as exc:
        return _Entry(size, mtime_ns, digest, Skip(rel, exc.reason), ())
    except (RecursionError, MemoryError, ValueError, TypeError, AttributeError, LookupError) as exc:
        # A reader bug on one odd file must not stop the edition: skip it, naming the error.
        log.debug("%s: unexpected error reading the post", rel, exc_info=True)
        reason = f"cannot be read ({type(exc).__name__}: {exc}); please report this file"
        return _Entry(size, mtime_ns, digest, Skip(rel, reason), ())
    return _Entry(size, mtime_ns, digest, post, notices)


def _verify(entry: _Entry, path: str | Path, rel: str, tz: ZoneInfo, separator: str) -> _Entry | None:
    """A racy entry is trusted only if the bytes still hash the same."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        return None
    if hashlib.sha256(raw).hexdigest() == entry.content_hash:
        return entry
    return _entry_from_bytes(raw, rel, entry.size, entry.mtime_ns, tz, separator)


def _decode(raw: bytes, warnings: list[Notice]) -> str:
    """UTF-8 (with or without BOM); else Windows-1252, else Latin-1, with a warning either way."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = f"byte {exc.start}"
    for codec, name in (("cp1252", "Windows-1252"), ("latin-1", "Latin-1")):
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError:
            continue
        warnings.append(
            (
                logging.WARNING,
                f"not valid UTF-8 (at {where}); read as {name}. Save the file as UTF-8 to be sure "
                "every character shows as intended.",
            )
        )
        return text
    raise AssertionError("latin-1 decodes any bytes")  # pragma: no cover


def _split(text: str, rel: str) -> tuple[dict[str, Any], str]:
    """Front matter and body, via python-frontmatter's handler, with errors that name the line."""
    stripped = text.strip()
    try:
        toml = hugo.split_toml(stripped)
    except hugo.TomlFrontMatterError as exc:
        raise PostError(rel, str(exc)) from None
    if toml is not None:
        return _lowered(toml[0]), toml[1].strip()
    if not _HANDLER.detect(stripped):
        return {}, stripped
    try:
        fm, content = _HANDLER.split(stripped)
    except ValueError:
        raise PostError(rel, "the front matter starts with --- but has no closing --- line") from None
    try:
        data = _HANDLER.load(fm)
    except yaml.YAMLError as exc:
        raise PostError(rel, _yaml_reason(exc, fm, text)) from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a timestamp no datetime can hold
        raise PostError(rel, f"the front matter has a value that cannot be read ({exc})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PostError(rel, "the front matter is not a list of `key: value` lines")
    return _lowered(data), content.strip().lstrip("\ufeff").strip()


def _lowered(data: dict[Any, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).strip().lower()
        if name not in meta or str(key) == name:
            meta[name] = value
    return meta


def _yaml_reason(exc: yaml.YAMLError, fm: str, text: str) -> str:
    """Say which line of the file is wrong and how, e.g. an unquoted colon in a title."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    limit = isinstance(exc, FrontMatterLimitError)  # valid YAML, but more than a post may ask
    reason = (
        f"the front matter is refused: {problem}"
        if limit
        else f"the front matter is not valid YAML ({problem})"
    )
    if mark is not None:
        before = text.find(fm) if fm else -1
        line_no = (text[:before].count("\n") if before >= 0 else 1) + mark.line + 1
        lines = fm.split("\n")
        line = lines[mark.line].strip() if mark.line < len(lines) else ""
        reason += f" on line {line_no}"
        if line:
            reason += f": {line[:80]}"
        if "mapping values" in problem:
            reason += " (put the value in quotes if it contains a colon)"
    if limit:
        reason += "; keep the front matter to plain `key: value` lines"
    return reason


# --- fields --------------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    """A front-matter value as text, or None when absent or blank."""
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text or None


def _titleize(slug: str) -> str:
    """Jekyll's title for a post without one: ``hello-world`` -> ``Hello World``."""
    return " ".join(word[:1].upper() + word[1:] for word in re.split(r"[-_\s]+", slug) if word)


def _flag(value: Any) -> bool:
    """A yes/no field (Hugo's ``draft``) as written: true, "true", "yes"."""
    if isinstance(value, str):
        return value.strip().lower() in {"true", "yes", "on", "1", "y"}
    return value is True


def _published(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_WORDS
    return value is None or bool(value)


def _categories(meta: dict[str, Any], folders: list[str]) -> tuple[str, ...]:
    """Folders above ``_posts``, ``category``, ``categories``; names kept, duplicates dropped."""
    names: list[str] = list(folders)
    single = meta.get("category")
    if isinstance(single, list | tuple):
        names.extend(str(v) for v in single if v is not None)
    elif single is not None:
        names.append(str(single))
    plural = meta.get("categories")
    if isinstance(plural, list | tuple):
        names.extend(str(v) for v in plural if v is not None and not isinstance(v, dict | list))
    elif isinstance(plural, str):
        names.extend(plural.split(",") if "," in plural else plural.split())
    elif plural is not None and not isinstance(plural, dict):
        names.append(str(plural))
    seen: set[str] = set()
    result: list[str] = []
    for name in names:
        display = " ".join(name.split())
        key = category_key(display)
        if key and key not in seen:
            seen.add(key)
            result.append(display)
    return tuple(result)


def _excerpt(body: str, own_separator: Any, default_separator: str) -> str | None:
    """The text before the excerpt separator (the post's own, else the site's), if present."""
    separator = own_separator if isinstance(own_separator, str) and own_separator else default_separator
    if not separator:
        return None
    if _MORE.fullmatch(separator.strip()):
        found = _MORE.search(body)
        index = found.start() if found else -1
    else:
        index = body.find(separator)
    if index <= 0:
        return None
    return body[:index].strip() or None
