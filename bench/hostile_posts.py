"""Time hostile posts (issue 15): what one bad post costs, against an ordinary post in the same run.

Usage: python bench/hostile_posts.py [--runs 5] [--corpora ../shared/corpora]

For each case one post file is read alone (``parse_post``), and then a whole edition is made from
the repository's sample posts plus that one file: read (no cache), select, summarise, render with
per-post isolation. Figures are medians of ``--runs`` runs in CPU seconds of this process (the
machine is shared: CPU time is the steadier figure; wall time is in the JSON). The bar: the slowest
single post costs under 1 s. The "vs baseline" column is this case's edition time over the
ordinary post's.

Two more rows: rendering an edition whose one post breaks the MJML compiler (made by hand, since
the reader cleans files: the isolation's bisecting cost) against the same edition without it; and,
with ``--corpora``, the cost of the text cleaning on a cold load of real posts (cleaning switched
off is the baseline).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from digest import pipeline, posts
from digest.config import Config, config_from_dict
from digest.errors import PostError
from digest.model import LoadResult, Post

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "posts"
TZ = ZoneInfo("Europe/London")
AS_OF = datetime(2026, 1, 9, 12, tzinfo=TZ)
CATEGORIES = ["US", "Europe", "Asia", "Markets", "Technology", "Climate"]


def _front(title: str, categories: str = "[US]", extra: str = "") -> str:
    return f'---\ntitle: "{title}"\ncategories: {categories}\ndate: 2026-01-07 10:00\n{extra}---\n\n'


def billion_laughs() -> bytes:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    previous = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ",".join(["*" + previous] * 9) + "]")
        previous = name
    return (
        "---\ntitle: Laughs\ndate: 2026-01-07\n" + "\n".join(lines) + "\ncategories: *i\n---\n\nHa.\n"
    ).encode()


def cases() -> dict[str, bytes]:
    lead = "An ordinary lead paragraph of a post, long enough to be a lead for the digest.\n\nMore.\n"
    made: dict[str, bytes] = {"baseline: an ordinary post": (_front("An ordinary post") + lead).encode()}
    for name, char in {
        "VT": "\x0b",
        "FF": "\x0c",
        "ESC": "\x1b",
        "NUL": "\x00",
        "SOH": "\x01",
        "BEL": "\x07",
        "US": "\x1f",
        "U+FFFE": "\ufffe",
        "U+FFFF": "\uffff",
    }.items():
        made[f"{name} in title"] = (_front(f"Bad {char} title") + lead).encode()
        made[f"{name} in lead"] = (_front("Fine title") + f"A lead with {char} in it.\n\nMore.\n").encode()
    made["recursive anchor (65 bytes)"] = (
        b"---\ntitle: Loop\ncategories: &r [US, *r]\ndate: 2026-01-07\n---\n\nHi.\n"
    )
    made[f"billion laughs ({len(billion_laughs())} bytes)"] = billion_laughs()
    many = ", ".join(f"C{i}" for i in range(100_000))
    made["100,000 categories (flow list)"] = (_front("Many", f"[US, {many}]") + lead).encode()
    block = "\n" + "".join(f'- "C{i}"\n' for i in range(100_000))
    made["100,000 categories (YAML block list)"] = (
        _front("Many", "[US]").replace("categories: [US]", "categories:" + block) + lead
    ).encode()
    made["100,000 keys of small maps (YAML)"] = (
        _front("Keys", extra="z: '\\t'\n" + "".join(f"k{i}: {{a: [1, 2]}}\n" for i in range(100_000))) + lead
    ).encode()
    made["13,000 explicit !!str tags (YAML)"] = (
        _front("Tags", "\n" + "".join(f"- !!str C{i}\n" for i in range(13_000))) + lead
    ).encode()
    made["nesting 999 deep"] = (_front("Deep", "[" * 999 + "]" * 999) + lead).encode()
    made["YAML escapes of controls"] = (_front("Esc \\u000b \\e \\x00 \\N", "[US]") + lead).encode()
    made["1 MB title"] = (_front("T" * 1_000_000) + lead).encode()
    made["5 MB body"] = (_front("Long body") + ("word " * 1_000_000) + "\n").encode()
    made["20,000 paragraphs"] = (_front("Paragraphs") + "Para.\n\n" * 20_000).encode()
    made["100 KB of unclosed {% (Liquid)"] = (_front("Liquid") + "{%" * 50_000 + "\n").encode()
    made["100 KB one paragraph of ["] = (_front("Brackets") + "[" * 100_000 + "\n").encode()
    made["300 KB one paragraph of [a](b) links"] = (_front("Links") + "[a](b)" * 50_000 + "\n").encode()
    made["1 MB one paragraph of _a"] = (_front("Underscores") + "_a" * 500_000 + "\n").encode()
    made["encoded-word + RLO title"] = (_front("=?utf-8?b?QWRtaW4=?= \u202egnp.exe") + lead).encode()
    return made


def timed(fn: Callable[[], Any], runs: int) -> tuple[Any, float, float]:
    """Median CPU and wall seconds of ``runs`` calls, and the last result."""
    cpus, walls, result = [], [], None
    for _ in range(runs):
        c0, w0 = time.process_time(), time.perf_counter()
        result = fn()
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - w0)
    return result, statistics.median(cpus), statistics.median(walls)


def config(root: Path) -> Config:
    return config_from_dict({"categories": CATEGORIES, "edition": {"section_cap": 50}}, root=root)


def edition_run(cfg: Config, folder: Path) -> tuple[int, int]:
    pipeline._ITEMS.clear()  # every run summarises again: a post's first edition pays that cost
    loaded = posts.load_posts(folder, tz=TZ)
    edition = pipeline.build_edition(cfg, as_of=AS_OF, posts=loaded)
    edition, rendered = pipeline.render_isolated(cfg, edition)
    return edition.post_count, len(rendered.html)


def outcome(raw: bytes) -> str:
    try:
        post, notices = posts.parse_post(raw, "case.md", tz=TZ)
    except PostError as exc:
        return "skipped: " + exc.reason[:70]
    said = "; ".join(message.split(";")[0][:60] for _, message in notices)
    return f"read, {len(post.categories)} categories" + (f" ({said})" if said else "")


@contextmanager
def cleaning_off() -> Iterator[None]:
    saved = posts.clean_post_text, posts.clean_post_fields
    posts.clean_post_text = lambda text, notices: text  # type: ignore[assignment]
    posts.clean_post_fields = lambda post, notices: post  # type: ignore[assignment]
    try:
        yield
    finally:
        posts.clean_post_text, posts.clean_post_fields = saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--corpora", type=Path, help="folder of real posts for the cleaning-cost row")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "hostile_posts.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cfg = config(root)
        site = root / "posts"
        shutil.copytree(SAMPLES, site)
        base_edition = None
        for name, raw in cases().items():
            _, parse_cpu, parse_wall = timed(lambda raw=raw: _parse(raw), args.runs)
            case = site / "zz-case.md"
            case.write_bytes(raw)
            (count, size), cpu, wall = timed(lambda: edition_run(cfg, site), args.runs)
            case.unlink()
            base_edition = base_edition or cpu
            rows.append(
                {
                    "case": name,
                    "bytes": len(raw),
                    "parse_cpu_s": parse_cpu,
                    "parse_wall_s": parse_wall,
                    "edition_cpu_s": cpu,
                    "edition_wall_s": wall,
                    "vs_baseline": cpu / base_edition if base_edition else 0.0,
                    "posts_in_edition": count,
                    "html_bytes": size,
                    "outcome": outcome(raw),
                }
            )
        rows.append(_isolation_row(cfg, site, args.runs))
        if args.corpora:
            rows.append(_cleaning_row(args.corpora, args.runs))
    _print(rows)
    slowest = max(
        (r for r in rows if "parse_cpu_s" in r and r["case"] != "baseline: an ordinary post"),
        key=lambda r: r["edition_cpu_s"] - rows[0]["edition_cpu_s"],
    )
    print(
        f"\nslowest hostile post: {slowest['case']}: parse {slowest['parse_cpu_s'] * 1000:.1f} ms, "
        f"edition {slowest['edition_cpu_s'] * 1000:.1f} ms CPU (baseline edition {rows[0]['edition_cpu_s'] * 1000:.1f} ms); bar < 1000 ms"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"runs": args.runs, "rows": rows}, indent=2) + "\n", encoding="utf-8")
    return 0


def _parse(raw: bytes) -> None:
    with suppress(PostError):
        posts.parse_post(raw, "case.md", tz=TZ)


def _isolation_row(cfg: Config, site: Path, runs: int) -> dict[str, Any]:
    """Render with one hand-made post that breaks the MJML compile, against the same without it."""
    loaded = posts.load_posts(site, tz=TZ)
    good = [p for p in loaded.posts if AS_OF.replace(day=2) <= p.date < AS_OF]
    bad: Post = replace(good[0], path="zz-bad.md", title="Breaks \x0b the compiler", content_hash="")
    clean = pipeline.build_edition(cfg, as_of=AS_OF, posts=LoadResult(tuple(good)))
    broken = pipeline.build_edition(cfg, as_of=AS_OF, posts=LoadResult((*good, bad)))
    _, base_cpu, _ = timed(lambda: pipeline.render_isolated(cfg, clean), runs)
    (edition, _), cpu, wall = timed(lambda: pipeline.render_isolated(cfg, broken), runs)
    assert "zz-bad.md" in {s.path for s in edition.skipped}
    return {
        "case": f"render: 1 post of {broken.post_count} breaks MJML (isolated)",
        "edition_cpu_s": cpu,
        "edition_wall_s": wall,
        "baseline_cpu_s": base_cpu,
        "vs_baseline": cpu / base_cpu,
        "posts_in_edition": edition.post_count,
        "outcome": "left out: " + next(s.reason for s in edition.skipped if s.path == "zz-bad.md")[:70],
    }


def _cleaning_row(corpora: Path, runs: int) -> dict[str, Any]:
    """A cold load of real posts with the cleaning on, against the same with it off."""
    folders = sorted(p for p in corpora.iterdir() if p.is_dir())

    def load_all() -> int:
        return sum(len(posts.load_posts(f, tz=TZ).posts) for f in folders)

    with cleaning_off():
        _, base_cpu, _ = timed(load_all, runs)
    count, cpu, wall = timed(load_all, runs)
    return {
        "case": f"cold load of {count:,} real posts: cleaning on vs off",
        "edition_cpu_s": cpu,
        "edition_wall_s": wall,
        "baseline_cpu_s": base_cpu,
        "vs_baseline": cpu / base_cpu,
        "outcome": f"+{(cpu - base_cpu) * 1000:.0f} ms for {count:,} posts",
    }


def _print(rows: list[dict[str, Any]]) -> None:
    print(f"{'case':<46} {'bytes':>10} {'parse ms':>9} {'edition ms':>11} {'vs base':>8}  outcome")
    for r in rows:
        parse = f"{r['parse_cpu_s'] * 1000:9.1f}" if "parse_cpu_s" in r else f"{'':>9}"
        size = f"{r['bytes']:>10,}" if "bytes" in r else f"{'':>10}"
        print(
            f"{r['case'][:46]:<46} {size} {parse} {r['edition_cpu_s'] * 1000:11.1f} "
            f"{r['vs_baseline']:7.2f}x  {r['outcome']}"
        )


if __name__ == "__main__":
    sys.exit(main())
