"""One preview build: the edition, its email, checks, manifest and any error, captured as data.

The page must never crash on a broken template or post, so ``build_preview`` catches every
error and returns it as a ``Problem`` with the file and line to look at (and the lines around
it). Shared with the plain `digest preview`, so both write the same files and the same manifest.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from digest.check import Finding, check_edition, check_leads
from digest.config import BUILTIN_TEMPLATES, Config
from digest.errors import DigestError, EmptyEditionError, RenderError
from digest.model import (
    PREFERENCES_URL,
    UNSUBSCRIBE_URL,
    Edition,
    LoadResult,
    RenderedEdition,
    Skip,
    reader_token,
)

if TYPE_CHECKING:
    from digest.render import RendererCache

ALL_CATEGORIES = "(all)"  # the manifest's counts key for a reader of every category
SNIPPET_CONTEXT = 3  # lines shown either side of the line an error names

# "path/to/file, line 12: ..." as RenderError and friends word it (no colon inside the path).
_WHERE = re.compile(r"^(?P<file>[^:\n]+?), line (?P<line>\d+)\b")
_LINE = re.compile(r"\bline (?P<line>\d+)\b")
_PREFERS = re.compile(r"\(\s*prefers-color-scheme\s*:\s*(dark|light)\s*\)", re.IGNORECASE)
_HEAD = re.compile(r"<head\b[^>]*>", re.IGNORECASE)


@dataclass(frozen=True)
class SnippetLine:
    number: int
    text: str
    is_error: bool


@dataclass(frozen=True)
class Problem:
    """An error the page shows instead of the email: what, where, and the source around it."""

    title: str
    message: str
    file: str | None = None
    line: int | None = None
    snippet: tuple[SnippetLine, ...] = ()
    trace: str = ""  # only for errors that are not DigestError (bugs): the traceback helps

    @property
    def text(self) -> str:
        """One line with the place first, for the frames, the flash and plain-text routes."""
        where = f"{self.file}, line {self.line}: " if self.file and self.line else ""
        return where + self.message


@dataclass
class PreviewBuild:
    """Everything the preview page shows for one category set."""

    categories: tuple[str, ...]
    as_of: datetime | None
    edition: Edition | None = None
    rendered: RenderedEdition | None = None
    manifest: dict[str, Any] | None = None
    findings: list[Finding] | None = None  # None: the email did not render
    problem: Problem | None = None
    unread: tuple[Skip, ...] = ()  # posts the loader could not use (broken front matter, drafts)
    unread_snippets: dict[str, Problem] = field(default_factory=dict)
    total_posts: int = 0
    built_at: float = field(default_factory=time.time)
    written: tuple[Path, ...] = ()


def build_preview(
    config: Config,
    *,
    as_of: datetime,
    categories: Sequence[str] = (),
    posts_dir: Path | None = None,
    out_dir: Path | None = None,
    use_cache: bool = True,
    checks: bool = True,
    renderers: RendererCache | None = None,
) -> PreviewBuild:
    """Build, render, check and (with ``out_dir``) write one edition; never raises for bad input.

    ``renderers``: the caller's built renderers (the preview server's, cleared when templates
    change); default render.SHARED.
    """
    from digest import pipeline

    result = PreviewBuild(categories=tuple(categories), as_of=as_of)
    try:
        loaded = pipeline.load(config, folder=posts_dir, use_cache=use_cache)
        result.total_posts = len(loaded.posts)
        result.unread = tuple(loaded.skipped)
        result.unread_snippets = {
            s.path: p for s in loaded.skipped if (p := _skip_problem(s, config, posts_dir)) is not None
        }
        edition = pipeline.build_edition(config, as_of=as_of, categories=list(categories), posts=loaded)
        result.edition = edition
        try:
            edition, result.rendered = pipeline.render_isolated(
                config, edition, renderers=renderers
            )  # broken posts left out
            result.edition = edition
        except EmptyEditionError as exc:
            result.problem = Problem("Nothing to send", str(exc))
        result.manifest = edition_manifest(config, edition, result.rendered, loaded, as_of=as_of)
        if out_dir is not None:
            result.written = write_outputs(out_dir, result.rendered, result.manifest, config=config)
        if checks and result.rendered is not None:
            result.findings = [
                *run_checks(result.rendered, config),
                *check_leads(edition),  # the weak leads `digest preview` and `digest check` print
                send_speed(config, edition, renderers),
            ]
    except Exception as exc:  # the page shows every failure; the server keeps running
        result.problem = problem_from(exc, config, posts_dir)
    return result


def category_counts(config: Config, loaded: LoadResult, *, as_of: datetime) -> dict[str, int]:
    """Distinct posts per category set: every category, then each configured category alone."""
    from digest import pipeline

    counts: dict[str, int] = {}
    sets: list[tuple[str, list[str]]] = [(ALL_CATEGORIES, [])]
    sets += [(c.name, [c.name]) for c in config.categories]
    for name, wanted in sets:
        edition = pipeline.build_edition(config, as_of=as_of, categories=wanted, posts=loaded)
        counts[name] = len({item.post_path for item in edition.items})
    return counts


def edition_manifest(
    config: Config,
    edition: Edition,
    rendered: RenderedEdition | None,
    loaded: LoadResult,
    *,
    as_of: datetime,
) -> dict[str, Any]:
    """pipeline.manifest with content hashes and counts per category set (what --against compares)."""
    from digest import pipeline

    hashes = {p.path: p.content_hash for p in loaded.posts}
    data = pipeline.with_hashes(pipeline.manifest(edition, rendered, config), hashes)
    if "counts" not in data:
        data["counts"] = category_counts(config, loaded, as_of=as_of)
    return data


EXAMPLE_TOKEN = "each-reader-gets-their-own-link"
SAMPLE_READER = "Ada"  # whose per-reader fields a preview shows when no reader is picked


def example_links(config: Config | None, email: str = "", name: str | None = None) -> dict[str, str]:
    """What a preview shows where each reader's own signed links and fields go: never the raw
    placeholders.

    For a subscriber picked by address, their real preference-centre and unsubscribe links (so
    the preview's footer works as theirs will; the unsubscribe page asks for a click, so
    following it changes nothing) and their own fields (``edition.reader_fields``, e.g. the
    greeting with their ``name``). Otherwise a link on the site that says plainly that each
    reader gets their own, and a sample reader's fields ("Hello Ada,").
    """
    base = config.web.base_url.rstrip("/") if config is not None else ""
    if email and config is not None:
        from digest.links import LinkMaker

        preferences, unsubscribe = LinkMaker.from_config(config).personal_urls(email)
    else:
        preferences = f"{base}/preferences/{EXAMPLE_TOKEN}"
        unsubscribe = f"{base}/unsubscribe/{EXAMPLE_TOKEN}"
    return {PREFERENCES_URL: preferences, UNSUBSCRIBE_URL: unsubscribe, **_reader_values(config, email, name)}


def _reader_values(config: Config | None, email: str, name: str | None) -> dict[str, str]:
    """Each switched-on per-reader field's placeholder -> the value the preview shows."""
    if config is None or not config.edition.reader_fields:
        return {}
    from digest.send.personalize import READER_FIELDS  # the one home of the fields' values

    shown = SAMPLE_READER if name is None else name
    return {
        reader_token(field): READER_FIELDS[field](shown, email) if field in READER_FIELDS else ""
        for field in config.edition.reader_fields
    }


def with_links(text: str, links: dict[str, str]) -> str:
    """``text`` with the personal-link placeholders replaced by ``links`` (see example_links)."""
    for token, url in links.items():
        text = text.replace(token, url)
    return text


def write_outputs(
    out: Path, rendered: RenderedEdition | None, manifest: dict[str, Any], *, config: Config | None = None
) -> tuple[Path, ...]:
    """digest.html, digest.txt and manifest.json side by side, each replaced atomically.

    Atomic because the preview server may build while an editor has the files open; with no
    rendered email (an empty edition) only the manifest is written. The footer links say that
    each reader gets their own (example_links), not the sender's placeholders.
    """
    import json

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    files: list[tuple[str, str]] = []
    if rendered is not None:
        links = example_links(config)
        files += [
            ("digest.html", with_links(rendered.html, links)),
            ("digest.txt", with_links(rendered.text, links)),
        ]
    files.append(("manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"))
    for name, text in files:
        target = out / name
        fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(target)
    return tuple(written)


def run_checks(
    rendered: RenderedEdition, config: Config, headers: dict[str, str] | None = None
) -> list[Finding]:
    """`digest check` over the rendered email, as the page lists it."""
    return check_edition(rendered, config, headers=headers)


def send_speed(config: Config, edition: Edition, renderers: RendererCache | None = None) -> Finding:
    """Whether a send assembles these templates from pieces or renders every set in full."""
    from digest.render import assembly_reason

    reason = assembly_reason(edition, config, renderers=renderers)
    if reason is None:
        return Finding(
            "ok", "send-speed", "A send assembles this template from pieces (templates/README.md)."
        )
    return Finding(
        "warning",
        "send-speed",
        f"A send renders every category set in full, about 5x slower: {reason}.",
        "Exact either way; templates/README.md says what a template may read to be assembled.",
    )


def frame_html(html: str, *, scheme: str = "light", links: dict[str, str] | None = None) -> str:
    """The email as an iframe shows it: the chosen colour scheme forced, links opening a new tab.

    Chromium gives an iframe the OS's prefers-color-scheme, which a page cannot switch, so the
    email's own ``@media (prefers-color-scheme: dark)`` rules are rewritten to always (dark) or
    never (light) match, and ``color-scheme`` is pinned the same way. That shows exactly the
    dark-mode rules the template wrote, as Apple Mail and other clients that honour them do.
    """
    dark = scheme == "dark"

    def swap(match: re.Match[str]) -> str:
        wanted = match.group(1).lower() == ("dark" if dark else "light")
        return "(min-width:0px)" if wanted else "(max-width:0px)"

    html = _PREFERS.sub(swap, html)
    inject = (
        f'<base target="_blank"><style>:root{{color-scheme:{"dark" if dark else "light"} !important}}</style>'
    )
    match = _HEAD.search(html)
    html = html[: match.end()] + inject + html[match.end() :] if match else inject + html
    return with_links(html, links if links is not None else example_links(None))


def problem_from(exc: BaseException, config: Config, posts_dir: Path | None = None) -> Problem:
    """An exception as the page shows it: a title, the message, and the source lines it names."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, RenderError):
        title = "The template is broken"
    elif isinstance(exc, DigestError):
        title = type(exc).__name__.removesuffix("Error").replace("Config", "config.toml") + " problem"
    else:
        title = f"Unexpected error ({type(exc).__name__})"
    trace = "" if isinstance(exc, DigestError) else "".join(traceback.format_exception(exc))
    match = _WHERE.match(message)
    if not match:
        return Problem(title, message, trace=trace)
    file, line = match.group("file").strip(), int(match.group("line"))
    path = _locate(file, config, posts_dir)
    return Problem(
        title,
        message[match.end() :].lstrip(": ") or message,  # the file and line are shown apart
        file=str(path or file),
        line=line,
        snippet=_snippet(path, line) if path else (),
        trace=trace,
    )


def _skip_problem(skip: Skip, config: Config, posts_dir: Path | None) -> Problem | None:
    """A broken post's reason with the lines around the line it names (if it names one)."""
    match = _LINE.search(skip.reason)
    if not match:
        return None
    line = int(match.group("line"))
    path = _locate(skip.path, config, posts_dir)
    if path is None:
        return None
    return Problem(
        "A post could not be read", f"{skip.path}: {skip.reason}", str(path), line, _snippet(path, line)
    )


def _locate(name: str, config: Config, posts_dir: Path | None) -> Path | None:
    candidate = Path(name)
    if candidate.is_absolute():
        return candidate if candidate.is_file() else None
    for folder in (posts_dir or config.posts_path, config.templates_path, BUILTIN_TEMPLATES, config.root):
        path = folder / name
        if path.is_file():
            return path
    return None


def _snippet(path: Path, line: int) -> tuple[SnippetLine, ...]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ()
    first = max(1, line - SNIPPET_CONTEXT)
    last = min(len(lines), line + SNIPPET_CONTEXT)
    return tuple(SnippetLine(n, lines[n - 1], n == line) for n in range(first, last + 1))
