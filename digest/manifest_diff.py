"""Compare a coming edition's manifest with a saved one, so an edition can be reviewed in a PR.

Both sides are manifests as ``pipeline.manifest`` + ``pipeline.with_hashes`` write them. Posts are
matched by path (their stable id) and compared by content hash, so an edited post shows up as
"changed" even when its title stayed the same. Pure: takes two dicts, returns data; printing is
``render_diff`` (a rich table) and ``ManifestDiff.to_dict`` (JSON-able).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from digest.errors import DigestError

ALL_CATEGORIES = "(all)"  # the counts key for a reader of every category


class ManifestError(DigestError):
    """The manifest given with --against is missing or is not a digest manifest."""


@dataclass(frozen=True)
class PostChange:
    """One post that differs between the two manifests."""

    path: str
    change: str  # added | removed | changed | moved
    title: str
    sections: tuple[str, ...] = ()  # where it is now (where it was, for removed posts)
    old_sections: tuple[str, ...] = ()
    old_title: str = ""
    old_hash: str = ""
    new_hash: str = ""

    @property
    def detail(self) -> str:
        """A short human reason: what exactly changed."""
        bits: list[str] = []
        if self.change == "changed":
            if self.old_hash and self.new_hash and self.old_hash != self.new_hash:
                bits.append(f"content {self.old_hash[:8]} → {self.new_hash[:8]}")
            if self.old_title and self.old_title != self.title:
                bits.append(f"title was {self.old_title!r}")
        if self.old_sections and set(self.old_sections) != set(self.sections) and self.change != "removed":
            bits.append(f"section {', '.join(self.old_sections)} → {', '.join(self.sections) or '-'}")
        return "; ".join(bits)


@dataclass(frozen=True)
class CountChange:
    """How many posts one category set (or one section) gets, before and after."""

    name: str
    old: int | None
    new: int | None

    @property
    def delta(self) -> int:
        return (self.new or 0) - (self.old or 0)


@dataclass(frozen=True)
class FieldChange:
    """A scalar that differs: subject, edition id, window, template version, ..."""

    name: str
    old: Any
    new: Any


@dataclass(frozen=True)
class ManifestDiff:
    """What changed between a saved manifest (old) and the coming edition (new)."""

    old_edition: str
    new_edition: str
    fields: tuple[FieldChange, ...] = ()
    posts: tuple[PostChange, ...] = ()
    sections: tuple[CountChange, ...] = ()  # posts per section of the edition built
    counts: tuple[CountChange, ...] = ()  # posts per category set (manifest "counts")
    unchanged: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(
            self.fields
            or self.posts
            or any(c.delta for c in self.sections)
            or any(c.old != c.new for c in self.counts)
        )

    def by_change(self, change: str) -> tuple[PostChange, ...]:
        return tuple(p for p in self.posts if p.change == change)

    @property
    def subject(self) -> FieldChange | None:
        return next((f for f in self.fields if f.name == "subject"), None)

    def summary(self) -> str:
        """One line: '2 added, 1 removed, 1 changed, 5 unchanged; subject changed'."""
        if not self.changed:
            return f"No changes since {self.old_edition}: {self.unchanged} posts, same subject."
        parts = [
            f"{len(self.by_change(kind))} {kind}"
            for kind in ("added", "removed", "changed", "moved")
            if self.by_change(kind)
        ]
        parts.append(f"{self.unchanged} unchanged")
        text = ", ".join(parts)
        if self.subject:
            text += "; subject changed"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "old_edition": self.old_edition,
            "new_edition": self.new_edition,
            "changed": self.changed,
            "summary": self.summary(),
            "fields": [{"name": f.name, "old": f.old, "new": f.new} for f in self.fields],
            "posts": [
                {
                    "path": p.path,
                    "change": p.change,
                    "title": p.title,
                    "sections": list(p.sections),
                    "old_sections": list(p.old_sections),
                    "old_title": p.old_title,
                    "old_hash": p.old_hash,
                    "new_hash": p.new_hash,
                    "detail": p.detail,
                }
                for p in self.posts
            ],
            "sections": [{"name": c.name, "old": c.old, "new": c.new} for c in self.sections],
            "counts": [{"name": c.name, "old": c.old, "new": c.new} for c in self.counts],
            "unchanged": self.unchanged,
        }


# Scalars compared one by one, with the label the table shows.
_FIELDS = (
    ("subject", ("subject",)),
    ("edition", ("edition",)),
    ("categories", ("categories",)),
    ("window start", ("window", "start_utc")),
    ("window end", ("window", "end_utc")),
    ("timezone", ("window", "timezone")),
    ("template version", ("template_version",)),
    ("post count", ("post_count",)),
)


def load_manifest(path: str | Path) -> dict[str, Any]:
    """Read a manifest.json written by `digest preview`; errors say which file and why."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(
            f"{path}: no such manifest. Give --against the manifest.json an earlier `digest preview` wrote."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read the manifest ({exc}).") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg}).") from None
    if not isinstance(data, dict) or not isinstance(data.get("sections"), list):
        raise ManifestError(
            f"{path}: not a digest manifest (no 'sections' list). Use the manifest.json `digest preview` wrote."
        )
    return data


def _get(data: dict[str, Any], keys: tuple[str, ...]) -> Any:
    value: Any = data
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _posts(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """path -> {title, hash, sections}; a post listed in two sections is one post."""
    found: dict[str, dict[str, Any]] = {}
    for section in data.get("sections") or ():
        for post in section.get("posts") or ():
            path = str(post.get("path", ""))
            entry = found.setdefault(
                path,
                {"title": post.get("title", ""), "hash": post.get("content_hash", ""), "sections": []},
            )
            entry["sections"].append(section.get("name", ""))
    return found


def _section_counts(data: dict[str, Any]) -> dict[str, int]:
    return {s.get("name", ""): len(s.get("posts") or ()) for s in data.get("sections") or ()}


def _merge_counts(old: dict[str, Any], new: dict[str, Any]) -> tuple[CountChange, ...]:
    names = list(old)
    names += [n for n in new if n not in old]
    return tuple(CountChange(n, old.get(n), new.get(n)) for n in names)


def diff_manifests(old: dict[str, Any], new: dict[str, Any]) -> ManifestDiff:
    """What differs from ``old`` (saved) to ``new`` (coming): posts by content hash, subject, counts."""
    fields = []
    for label, keys in _FIELDS:
        before, after = _get(old, keys), _get(new, keys)
        if before != after:
            fields.append(FieldChange(label, before, after))

    before_posts, after_posts = _posts(old), _posts(new)
    changes: list[PostChange] = []
    unchanged = 0
    for path, now in after_posts.items():
        was = before_posts.get(path)
        sections = tuple(now["sections"])
        if was is None:
            changes.append(PostChange(path, "added", now["title"], sections, new_hash=now["hash"]))
            continue
        old_sections = tuple(was["sections"])
        content_changed = (was["hash"] or now["hash"]) and was["hash"] != now["hash"]
        if content_changed or was["title"] != now["title"]:
            kind = "changed"
        elif set(old_sections) != set(sections):
            kind = "moved"
        else:
            unchanged += 1
            continue
        changes.append(
            PostChange(
                path,
                kind,
                now["title"],
                sections,
                old_sections=old_sections,
                old_title=was["title"] if was["title"] != now["title"] else "",
                old_hash=was["hash"],
                new_hash=now["hash"],
            )
        )
    for path, was in before_posts.items():
        if path not in after_posts:
            changes.append(
                PostChange(path, "removed", was["title"], tuple(was["sections"]), old_hash=was["hash"])
            )

    order = {"added": 0, "removed": 1, "changed": 2, "moved": 3}
    changes.sort(key=lambda c: (order[c.change], c.path))
    return ManifestDiff(
        old_edition=str(old.get("edition", "?")),
        new_edition=str(new.get("edition", "?")),
        fields=tuple(fields),
        posts=tuple(changes),
        sections=_merge_counts(_section_counts(old), _section_counts(new)),
        counts=_merge_counts(old.get("counts") or {}, new.get("counts") or {}),
        unchanged=unchanged,
    )


_STYLE = {"added": "green", "removed": "red", "changed": "yellow", "moved": "cyan"}
_MARK = {"added": "+", "removed": "-", "changed": "~", "moved": ">"}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "(all)"
    return str(value)


def render_diff(diff: ManifestDiff) -> RenderableType:
    """The diff as rich tables: fields, posts, counts; only what changed, plus a summary line."""
    parts: list[RenderableType] = [
        Text.assemble(
            ("Compared with ", ""),
            (diff.old_edition, "bold"),
            (": ", ""),
            (diff.summary(), "bold" if diff.changed else "green"),
        )
    ]
    if diff.fields:
        table = Table(title="Edition", title_justify="left")
        table.add_column("Field")
        table.add_column("Was", overflow="fold")
        table.add_column("Now", overflow="fold")
        for f in diff.fields:
            table.add_row(f.name, _fmt(f.old), _fmt(f.new))
        parts.append(table)
    if diff.posts:
        table = Table(title="Posts", title_justify="left")
        table.add_column("Change", no_wrap=True)
        table.add_column("Section")
        table.add_column("Post", overflow="fold", ratio=3)
        table.add_column("Detail", overflow="fold", ratio=2)
        for p in diff.posts:
            style = _STYLE[p.change]
            table.add_row(
                Text(f"{_MARK[p.change]} {p.change}", style=style),
                ", ".join(p.sections),
                Text.assemble((p.title, "bold"), "\n", (p.path, "dim")),
                p.detail,
            )
        parts.append(table)
    rows = [(label, c) for label, group in (("section", diff.sections), ("set", diff.counts)) for c in group]
    if any(c.old != c.new for _, c in rows):
        table = Table(title="Counts", title_justify="left")
        table.add_column("Kind")
        table.add_column("Name")
        table.add_column("Was", justify="right")
        table.add_column("Now", justify="right")
        table.add_column("Δ", justify="right")
        for label, c in rows:
            if c.old == c.new:
                continue
            delta = f"{c.delta:+d}" if c.delta else "0"
            table.add_row(label, c.name, _fmt(c.old), _fmt(c.new), delta)
        parts.append(table)
    return Group(*parts)


def diff_text(diff: ManifestDiff, *, width: int = 110) -> str:
    """The rendered tables as plain text (for logs, PR comments and tests)."""
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(render_diff(diff))
    return console.export_text()
