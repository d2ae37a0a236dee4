"""One benchmark command for every stage of digest, with its baselines measured in the same run.

    python bench/run.py [--corpora ../shared/corpora] [--quick] [--subscribers 10000,100000,1000000]
                        [--json bench/results/latest.json]

Prints one table (median, min and max of several runs per figure) and writes the figures as JSON.
Stages: posts load cold and warm (and parsed from scratch with no cache, the baseline), select,
summarize, render of one category set (Jinja2 + MJML + text) against the reference Node ``mjml``
compiler on the same MJML, and a send of N synthetic subscribers to the fake SendGrid server (fast
mode, in its own process). A growth section shows how each stage's cost grows with its input.

Stages that must not see each other's memory or caches (posts cold/warm, each send size) run in a
child process: ``python bench/run.py --child ...`` (internal). See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CACHE = BENCH / "results" / "cache"
SEED = 20260109
CATEGORIES = (
    "US",
    "Europe",
    "Asia",
    "Africa",
    "Americas",
    "Markets",
    "Technology",
    "Climate",
    "Science",
    "Health",
    "Culture",
    "Sport",
)
CORPUS_FOLDERS = ("nodejs-blog/blog", "opensuse-news/_posts")
API_KEY = "SG.bench-key-not-secret"
SECRET = "bench-secret-that-is-long-enough-0123456789"

# Targets from issue 7 (seconds unless said otherwise).
TARGET_POSTS_COLD = 1.0
TARGET_POSTS_WARM = 0.2
TARGET_RENDER_MS = 2.0
TARGET_RENDER_RATIO = 20.0
TARGET_SEND_1M_S = 30.0
TARGET_SEND_MB = 250.0

logging.disable(logging.WARNING)  # skipped posts are expected in real corpora; not what we time


# --- measuring -------------------------------------------------------------------------------------


@dataclass
class Figure:
    """One row of the table: a stage, what it ran on, and its samples."""

    stage: str
    input: str
    unit: str  # "ms" | "s" | "MB" | "msg/s" | "x"
    samples: list[float]
    note: str = ""
    baseline: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    def as_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "input": self.input,
            "unit": self.unit,
            "median": self.median,
            "min": min(self.samples) if self.samples else None,
            "max": max(self.samples) if self.samples else None,
            "runs": len(self.samples),
            "samples": self.samples,
            "baseline": self.baseline or None,
            "ratio": self.ratio,
            "target": self.target or None,
            "met": self.met,
            "note": self.note or None,
            **self.extra,
        }


def timed(fn: Callable[[], Any], runs: int, warmup: int = 1) -> tuple[list[float], Any]:
    """Wall times in seconds of ``runs`` calls after ``warmup`` calls; GC is collected, not disabled."""
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def child(args: list[str], timeout: float = 900) -> dict[str, Any]:
    """Run ``bench/run.py --child ...`` in a fresh interpreter and return the JSON it prints."""
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {args[0]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def load_average() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


# --- config and synthetic data ---------------------------------------------------------------------


def bench_config(root: Path, categories: Sequence[str] = CATEGORIES) -> Any:
    from digest.config import config_from_dict

    return config_from_dict(
        {
            "site": {
                "name": "The Bench Brief",
                "base_url": "https://brief.example.com",
                "postal_address": "Bench Ltd, 1 High Street, London N1 1AA",
            },
            "sender": {"from_email": "brief@example.com", "from_name": "Bench Brief", "max_retries": 2},
            "database": {"url": f"sqlite:///{root / 'digest.db'}"},
            "web": {"base_url": "https://brief.example.com"},
            "posts": {"folder": str(root / "posts"), "cache": str(root / ".cache")},
            "categories": list(categories),
        },
        root=root,
    )


_WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "a",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "they",
    "you",
    "were",
    "her",
    "she",
    "there",
    "been",
    "one",
    "all",
    "we",
    "their",
    "has",
    "would",
    "when",
    "if",
    "so",
    "no",
    "will",
    "market",
    "policy",
    "climate",
    "report",
    "city",
    "council",
    "release",
    "update",
    "server",
    "network",
    "build",
    "kernel",
    "project",
    "community",
    "election",
    "trade",
    "energy",
    "research",
    "museum",
    "season",
    "vaccine",
    "court",
    "budget",
    "bridge",
    "river",
]


def synthetic_posts(folder: Path, count: int, seed: int = SEED) -> Path:
    """``count`` Jekyll posts over CATEGORIES, one every ~8 hours back from 2026-01-09 (seeded)."""
    rng = random.Random(seed + count)
    folder.mkdir(parents=True, exist_ok=True)
    start = datetime(2026, 1, 9, tzinfo=UTC)
    for i in range(count):
        when = start - timedelta(hours=8 * i + rng.randint(0, 7), minutes=rng.randint(0, 59))
        cats = rng.sample(CATEGORIES, rng.choice((1, 1, 2, 3)))
        title = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 9))).capitalize()
        slug = f"{when:%Y-%m-%d}-post-{i}"
        paragraphs = []
        for _ in range(rng.randint(3, 12)):
            words = [rng.choice(_WORDS) for _ in range(rng.randint(30, 120))]
            words[rng.randrange(len(words))] = f"[{words[0]}](https://example.org/{i})"
            words[rng.randrange(len(words))] = f"*{words[1]}*"
            paragraphs.append(" ".join(words).capitalize() + ".")
        if rng.random() < 0.2:
            paragraphs.insert(1, "<!--more-->")
        if rng.random() < 0.3:
            paragraphs.insert(0, f"## {title}")
        front = [
            "---",
            f'title: "{title}"',
            f"date: {when:%Y-%m-%d %H:%M:%S} +0000",
            f"categories: [{', '.join(cats)}]",
            "tags: [alpha, beta]",
            "author: Bench Writer",
            "---",
        ]
        (folder / f"{slug}.md").write_text(
            "\n".join(front) + "\n\n" + "\n\n".join(paragraphs) + "\n", "utf-8"
        )
    return folder


def corpus_folders(corpora: Path | None, scratch: Path, count: int) -> list[Path]:
    if corpora is not None:
        folders = [corpora / name for name in CORPUS_FOLDERS]
        missing = [str(f) for f in folders if not f.is_dir()]
        if missing:
            raise SystemExit(f"--corpora {corpora}: missing {', '.join(missing)}")
        return folders
    half = count // 2
    return [
        synthetic_posts(scratch / "synthetic-a", half, SEED),
        synthetic_posts(scratch / "synthetic-b", count - half, SEED + 1),
    ]


# --- the posts stage (child process) ----------------------------------------------------------------


def posts_pipeline(
    folders: Sequence[Path], cache: Path | None, summarize_all: bool = False
) -> dict[str, Any]:
    """Load, select and summarise one edition per folder (as_of: the day after its newest post)."""
    from zoneinfo import ZoneInfo

    from digest.permalink import post_url
    from digest.posts import load_posts
    from digest.select import choose, window_for
    from digest.summarize import summarize

    tz = ZoneInfo("UTC")
    out: dict[str, float] = {"load": 0.0, "load_cpu": 0.0, "select": 0.0, "summarize": 0.0}
    counts = {"posts": 0, "skipped": 0, "selected": 0}
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for folder in folders:
        t0, c0 = time.perf_counter(), time.process_time()
        loaded = load_posts(folder, tz=tz, cache_dir=cache / folder.name if cache else None)
        t1, c1 = time.perf_counter(), time.process_time()
        newest = max((p.date for p in loaded.posts if p.published), default=datetime.now(UTC))
        start, end = window_for(
            newest.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1), 7
        )
        selection = choose(loaded.posts, start=start, end=end, categories=None, order=(), cap=10)
        t2 = time.perf_counter()
        chosen = loaded.posts if summarize_all else selection.posts
        for post in chosen:
            summarize(
                post, url=post_url(post, base_url="https://x.example", pattern="date", tz=tz), word_budget=70
            )
        t3 = time.perf_counter()
        out["load"] += t1 - t0
        out["load_cpu"] += c1 - c0
        out["select"] += t2 - t1
        out["summarize"] += t3 - t2
        counts["posts"] += len(loaded.posts)
        counts["skipped"] += len(loaded.skipped)
        counts["selected"] += len(selection.posts)
    out["total"] = time.perf_counter() - wall0
    out["total_cpu"] = time.process_time() - cpu0
    return {**out, **counts}


def child_posts(argv: list[str]) -> dict[str, Any]:
    p = argparse.ArgumentParser()
    p.add_argument("--folders", required=True)
    p.add_argument("--cache", default="")
    p.add_argument("--all", action="store_true")
    a = p.parse_args(argv)
    import digest.permalink
    import digest.posts
    import digest.select
    import digest.summarize  # noqa: F401

    folders = [Path(f) for f in a.folders.split(os.pathsep)]
    return posts_pipeline(folders, Path(a.cache) if a.cache else None, summarize_all=a.all)


def bench_posts(folders: Sequence[Path], runs: int, scratch: Path, label: str) -> list[Figure]:
    joined = os.pathsep.join(str(f) for f in folders)
    results: dict[str, list[dict[str, Any]]] = {"none": [], "cold": [], "warm": []}
    warm_cache = scratch / "posts-cache-warm"
    shutil.rmtree(warm_cache, ignore_errors=True)
    child(["posts", "--folders", joined, "--cache", str(warm_cache)])  # fills the warm cache
    for i in range(runs):
        cold_cache = scratch / f"posts-cache-cold-{i}"
        shutil.rmtree(cold_cache, ignore_errors=True)
        results["cold"].append(child(["posts", "--folders", joined, "--cache", str(cold_cache)]))
        results["warm"].append(child(["posts", "--folders", joined, "--cache", str(warm_cache)]))
        results["none"].append(child(["posts", "--folders", joined]))
    n = results["warm"][0]
    what = f"{label}: {n['posts']} posts ({n['skipped']} skipped), {n['selected']} selected"
    figures = []
    medians = {k: statistics.median(r["total"] for r in v) for k, v in results.items()}
    for kind, target in (("cold", TARGET_POSTS_COLD), ("warm", TARGET_POSTS_WARM)):
        samples = [r["total"] for r in results[kind]]
        figures.append(
            Figure(
                f"posts {kind}: load+select+summarize",
                what,
                "s",
                samples,
                baseline="parsed from scratch, no cache",
                ratio=medians["none"] / statistics.median(samples),
                target=f"<= {target} s",
                met=statistics.median(samples) <= target,
                note=f"CPU {statistics.median(r['total_cpu'] for r in results[kind]):.3f} s",
                extra={"parts": _parts(results[kind])},
            )
        )
        figures.append(
            Figure(
                f"  posts {kind}: load only",
                what,
                "s",
                [r["load"] for r in results[kind]],
                note=f"CPU {statistics.median(r['load_cpu'] for r in results[kind]):.3f} s",
            )
        )
    figures.append(
        Figure(
            "  baseline: parse from scratch",
            what,
            "s",
            [r["total"] for r in results["none"]],
            note=f"CPU {statistics.median(r['total_cpu'] for r in results['none']):.3f} s",
            extra={"parts": _parts(results["none"])},
        )
    )
    figures.append(
        Figure("  select (one edition/corpus)", what, "ms", [r["select"] * 1e3 for r in results["warm"]])
    )
    figures.append(
        Figure("  summarize (edition posts)", what, "ms", [r["summarize"] * 1e3 for r in results["warm"]])
    )
    return figures


def _parts(rows: list[dict[str, Any]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in rows) for k in ("load", "load_cpu", "select", "summarize")}


def bench_summarize_all(folders: Sequence[Path], runs: int, label: str, limit: int | None) -> Figure:
    """Every post's lead (or an even sample of ``limit``): the summarizer's cost per post."""
    from zoneinfo import ZoneInfo

    from digest.posts import load_posts
    from digest.summarize import summarize

    tz = ZoneInfo("UTC")
    posts = [p for f in folders for p in load_posts(f, tz=tz).posts]
    if limit and len(posts) > limit:
        posts = posts[:: len(posts) // limit]

    def run() -> None:
        for post in posts:
            summarize(post, url="https://x.example/p", word_budget=70)

    times, _ = timed(run, runs, warmup=0)
    per_post_us = statistics.median(times) / len(posts) * 1e6
    return Figure(
        "summarize every post" if not limit else "summarize a sample of posts",
        f"{label}: {len(posts)} posts",
        "s",
        times,
        note=f"{per_post_us:.0f} us/post",
    )


# --- render ---------------------------------------------------------------------------------------------


def make_edition(config: Any, posts: Sequence[Any], sections: int, per_section: int) -> Any:
    """An Edition of ``sections`` x ``per_section`` items summarised from real or synthetic posts."""
    from digest.model import Edition, Section
    from digest.permalink import post_url
    from digest.summarize import summarize

    pool = sorted((p for p in posts if p.published), key=lambda p: p.date, reverse=True)
    out = []
    it = iter(pool)
    for s in range(sections):
        items = []
        for post in it:
            items.append(
                summarize(
                    post,
                    url=post_url(
                        post, base_url=config.site.base_url, pattern=config.site.permalink, tz=config.tz
                    ),
                    word_budget=config.edition.lead_words,
                )
            )
            if len(items) == per_section:
                break
        out.append(Section(name=CATEGORIES[s % len(CATEGORIES)], items=tuple(items)))
    end = datetime(2026, 1, 9, tzinfo=UTC)
    return Edition(
        id="2026-W02",
        window_start=end - timedelta(days=7),
        window_end=end,
        categories=tuple(CATEGORIES[:sections]),
        sections=tuple(out),
    )


class NodeMjml:
    """The warm Node process of bench/mjml_worker.js (None-safe: ``available`` says if it runs)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.reason = ""
        node = shutil.which("node")
        if node is None:
            self.reason = "node not found: Node baseline skipped"
            return
        if not (BENCH / "node_modules" / "mjml").is_dir():
            npm = shutil.which("npm")
            if npm is None:
                self.reason = "npm not found: cannot install mjml; Node baseline skipped"
                return
            print("installing the reference mjml into bench/node_modules (npm ci)...", file=sys.stderr)
            done = subprocess.run(
                [npm, "ci", "--prefix", str(BENCH), "--no-audit", "--no-fund"], capture_output=True, text=True
            )
            if done.returncode != 0:
                self.reason = f"npm ci failed: Node baseline skipped ({done.stderr.strip()[-300:]})"
                return
        self.proc = subprocess.Popen(
            [node, str(BENCH / "mjml_worker.js")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=BENCH,
        )

    @property
    def available(self) -> bool:
        return self.proc is not None

    def compile_times(self, source: str, runs: int, warmup: int) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps({"mjml": source, "runs": runs, "warmup": warmup}) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        if not answer.get("ok"):
            raise RuntimeError(f"mjml_worker.js: {answer.get('error')}")
        return answer

    def close(self) -> None:
        if self.proc is not None:
            assert self.proc.stdin
            self.proc.stdin.close()
            self.proc.wait(timeout=10)


def bench_render(config: Any, posts: Sequence[Any], runs: int, node: NodeMjml, label: str) -> list[Figure]:
    import mjml

    from digest.render import Renderer

    renderer = Renderer(config)
    edition = make_edition(config, posts, sections=3, per_section=4)
    # 3 sections of 4, 4 and 2: a 10-post edition for one set of three categories
    from digest.model import Section

    edition = type(edition)(
        id=edition.id,
        window_start=edition.window_start,
        window_end=edition.window_end,
        categories=edition.categories,
        sections=(*edition.sections[:2], Section(edition.sections[2].name, edition.sections[2].items[:2])),
    )
    assert edition.post_count == 10, edition.post_count
    source = renderer.mjml_source(edition)
    # Six sets of the same 10 posts (the sections in every order, as different category sets
    # order them), taken in turn: a send renders each set once, so nothing per set is reused.
    import itertools

    variants = [
        type(edition)(
            id=edition.id,
            window_start=edition.window_start,
            window_end=edition.window_end,
            categories=tuple(s.name for s in order),
            sections=tuple(order),
        )
        for order in itertools.permutations(edition.sections)
    ]
    turn = itertools.cycle(variants)
    assembler = renderer.assembler()
    for variant in variants:
        assembler.render(variant)  # compiles the sections once, as a send does
    # Rounds that take turns (Node, then ours): this machine's speed drifts within a run, and a
    # ratio of medians measured minutes apart would mostly measure the drift.
    rounds = 10
    full: list[float] = []
    assembled: list[float] = []
    jinja: list[float] = []
    compile_only: list[float] = []
    node_times: list[float] = []
    answer: dict[str, Any] = {}
    for i in range(rounds):
        if node.available:
            answer = node.compile_times(source, runs=max(4, runs // 30), warmup=50 if i == 0 else 5)
            node_times += answer["times_ms"]
        t, _ = timed(lambda: renderer.render(next(turn)), runs // rounds, warmup=20 if i == 0 else 2)
        full += t
        t, _ = timed(lambda: assembler.render(next(turn)), runs // rounds, warmup=5 if i == 0 else 2)
        assembled += t
        t, _ = timed(lambda: renderer.mjml_source(edition), runs // rounds, warmup=2)
        jinja += t
        t, _ = timed(
            lambda: mjml.mjml2html(source, fonts={}, disable_comments=True), runs // rounds, warmup=2
        )
        compile_only += t
    rendered = renderer.render(edition)
    for variant in variants:
        assert assembler.render(variant) == renderer.render(variant), (
            "EditionAssembler must match Renderer.render"
        )
    full_ms = [t * 1e3 for t in full]
    what = f"{label}: 10 posts, 3 categories, MJML {len(source.encode()) / 1024:.1f} KB -> HTML {rendered.html_bytes / 1024:.1f} KB"
    figures = []
    node_fig = None
    ratio = None
    if node.available:
        node_fig = Figure(
            "  baseline: Node mjml (warm)",
            f"same MJML; mjml {answer['mjml']} on node {answer['node']}; HTML {answer['html_bytes'] / 1024:.1f} KB",
            "ms",
            node_times,
            note=f"timed inside Node (no IPC), in {rounds} rounds taking turns with ours",
        )
        ratio = node_fig.median / statistics.median(full_ms)
    met = statistics.median(full_ms) <= TARGET_RENDER_MS and (ratio is None or ratio >= TARGET_RENDER_RATIO)
    figures.append(
        Figure(
            "render one set: Jinja2+MJML+text",
            what,
            "ms",
            full_ms,
            baseline="Node mjml, same MJML" if node.available else node.reason,
            ratio=ratio,
            target=f"<= {TARGET_RENDER_MS} ms, >= {TARGET_RENDER_RATIO:.0f}x Node",
            met=met,
        )
    )
    asm_ms = [t * 1e3 for t in assembled]
    asm_ratio = node_fig.median / statistics.median(asm_ms) if node_fig else None
    figures.append(
        Figure(
            "render one set in a send (assembled)",
            what,
            "ms",
            asm_ms,
            baseline="Node mjml, same MJML" if node_fig else node.reason,
            ratio=asm_ratio,
            target=f"<= {TARGET_RENDER_MS} ms, >= {TARGET_RENDER_RATIO:.0f}x Node",
            met=statistics.median(asm_ms) <= TARGET_RENDER_MS
            and (asm_ratio is None or asm_ratio >= TARGET_RENDER_RATIO),
            note="EditionAssembler, its sections compiled (as after the first set that has them), "
            "taking 6 sets of these posts in turn (the sections in every order) so nothing per set "
            "is reused; output identical to Renderer.render",
        )
    )
    figures.append(Figure("  of which Jinja2 -> MJML", what, "ms", [t * 1e3 for t in jinja]))
    figures.append(Figure("  of which mjml-python compile", what, "ms", [t * 1e3 for t in compile_only]))
    if node_fig is not None:
        node_fig.ratio = node_fig.median / statistics.median([t * 1e3 for t in compile_only])
        node_fig.note += "; ratio here: Node / mjml-python compile alone"
        figures.append(node_fig)
    else:
        figures.append(Figure("  baseline: Node mjml (warm)", node.reason, "ms", []))
    return figures


def bench_all_sets(config: Any, posts_folder: Path, runs: int, direct_sample: int) -> list[Figure]:
    """Every category set of 12 categories (4,095 editions of one window): direct vs assembled."""
    import itertools

    from digest.model import Edition, Section
    from digest.permalink import post_url
    from digest.posts import load_posts
    from digest.render import Renderer
    from digest.select import choose, window_for
    from digest.summarize import summarize

    posts = load_posts(posts_folder, tz=config.tz).posts
    start, end = window_for(datetime(2026, 1, 9, tzinfo=config.tz), 7)
    in_window = [p for p in posts if start <= p.date < end]
    items = {
        p.path: summarize(
            p, url=post_url(p, base_url=config.site.base_url, pattern=config.site.permalink, tz=config.tz)
        )
        for p in in_window
    }
    editions = []
    for k in range(1, len(CATEGORIES) + 1):
        for chosen in itertools.combinations(CATEGORIES, k):
            sel = choose(in_window, start=start, end=end, categories=chosen, order=CATEGORIES, cap=10)
            sections = tuple(Section(n, tuple(items[p.path] for p in ps)) for n, ps in sel.sections)
            editions.append(Edition("2026-W02", start, end, chosen, sections))
    mean_posts = statistics.mean(e.post_count for e in editions)
    what = f"{len(editions)} sets of 12 categories, {len(in_window)} posts in the window, {mean_posts:.1f} posts/set"
    renderer = Renderer(config)

    def assembled() -> None:
        assembler = renderer.assembler()  # a fresh one: every piece compiled within the timing
        for e in editions:
            assembler.render(e)

    t_asm, _ = timed(assembled, runs, warmup=0)
    sample = editions[:: max(1, len(editions) // direct_sample)]
    t_direct, _ = timed(lambda: [renderer.render(e) for e in sample], 1, warmup=0)
    direct_all = t_direct[0] * len(editions) / len(sample)
    return [
        Figure(
            "render every category set (assembled)",
            what,
            "s",
            t_asm,
            baseline="Renderer.render per set",
            ratio=direct_all / statistics.median(t_asm),
            note=f"{statistics.median(t_asm) / len(editions) * 1e3:.2f} ms/set including every compile; "
            f"direct estimated from {len(sample)} sets: {direct_all:.2f} s",
        )
    ]


def growth_render(config: Any, posts: Sequence[Any], runs: int) -> list[Figure]:
    from digest.render import Renderer

    renderer = Renderer(config)
    figures = []
    for sections, per in ((1, 1), (1, 10), (3, 4), (6, 4), (12, 2), (4, 10)):
        edition = make_edition(config, posts, sections, per)
        times, rendered = timed(lambda e=edition: renderer.render(e), runs, warmup=5)
        figures.append(
            Figure(
                "render growth",
                f"{sections} categories x {per} posts = {edition.post_count} posts",
                "ms",
                [t * 1e3 for t in times],
                note=f"HTML {rendered.html_bytes / 1024:.0f} KB",
            )
        )
    return figures


def growth_posts(scratch: Path, sizes: Sequence[int], runs: int) -> list[Figure]:
    """Cold and warm load, per post, for synthetic folders of growing size (in process)."""
    from zoneinfo import ZoneInfo

    from digest.posts import load_posts
    from digest.select import choose, window_for

    tz = ZoneInfo("UTC")
    figures = []
    for n in sizes:
        folder = synthetic_posts(scratch / f"growth-{n}", n, SEED + 7)
        cold, warm, sel = [], [], []
        for i in range(runs):
            cache = scratch / f"growth-cache-{n}-{i}"
            t0 = time.perf_counter()
            load_posts(folder, tz=tz, cache_dir=cache)
            cold.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            loaded = load_posts(folder, tz=tz, cache_dir=cache)
            warm.append(time.perf_counter() - t0)
            start, end = window_for(datetime(2026, 1, 10, tzinfo=tz), 7)
            t0 = time.perf_counter()
            choose(loaded.posts, start=start, end=end, categories=CATEGORIES[:3], order=CATEGORIES, cap=10)
            sel.append(time.perf_counter() - t0)
        figures.append(
            Figure(
                "posts growth: cold load",
                f"{n} synthetic posts",
                "s",
                cold,
                note=f"{statistics.median(cold) / n * 1e6:.0f} us/post",
            )
        )
        figures.append(
            Figure(
                "posts growth: warm load",
                f"{n} synthetic posts",
                "s",
                warm,
                note=f"{statistics.median(warm) / n * 1e6:.1f} us/post",
            )
        )
        figures.append(Figure("posts growth: select", f"{n} synthetic posts", "ms", [t * 1e3 for t in sel]))
    return figures


# --- send -------------------------------------------------------------------------------------------


def subscriber_db(n: int, seed: int = SEED) -> Path:
    """A SQLite database of ``n`` active subscribers over 12 categories with random sets (cached)."""
    import sqlite3

    from digest.store import open_store
    from digest.subscribers import category_set_label

    CACHE.mkdir(parents=True, exist_ok=True)
    # v2: subscribers.category_set filled (v1 left it empty, so every reader looked like one set)
    path = CACHE / f"subscribers-v2-{n}-{seed}.db"
    if path.exists():
        check_category_sets(path, n)
        return path
    tmp = path.with_suffix(".tmp.db")
    for suffix in ("", "-wal", "-shm"):
        Path(str(tmp) + suffix).unlink(missing_ok=True)
    print(f"creating {path.name} ({n:,} subscribers, cached for later runs)...", file=sys.stderr)
    config = bench_config(CACHE)
    open_store(config, url=f"sqlite:///{tmp}").dispose()
    rng = random.Random(seed)
    keys = [c.casefold() for c in CATEGORIES]
    db = sqlite3.connect(tmp)
    db.execute("PRAGMA journal_mode = OFF")
    db.execute("PRAGMA synchronous = OFF")
    now = "2026-01-01 00:00:00.000000"
    chunk = 50_000
    for lo in range(1, n + 1, chunk):
        ids = range(lo, min(n, lo + chunk - 1) + 1)
        rows: list[tuple[int, str]] = []
        subs: list[tuple[int, str, str, str, str, str, str]] = []
        for i in ids:
            mask = rng.randrange(1, 1 << len(keys))
            mine = [keys[b] for b in range(len(keys)) if mask >> b & 1]
            rows.extend((i, key) for key in mine)
            email = f"reader{i}@example.com"
            subs.append((i, email, email, now, now, now, category_set_label(mine)))
        db.executemany(
            "INSERT INTO subscribers (id, email, email_key, name, status, created_at, updated_at, confirmed_at,"
            " category_set) VALUES (?, ?, ?, '', 'active', ?, ?, ?, ?)",
            subs,
        )
        db.executemany("INSERT INTO subscriber_categories (subscriber_id, category_key) VALUES (?, ?)", rows)
        db.commit()
    db.execute("ANALYZE")
    db.commit()
    db.close()
    tmp.rename(path)
    check_category_sets(path, n)
    return path


def expected_category_sets(n: int, categories: int = len(CATEGORIES)) -> int:
    """How many distinct non-empty sets ``n`` readers with uniform random sets cover (about).

    Every one of the 2**12 - 1 = 4,095 sets once there are many more readers than sets; below
    that, the expected number of distinct draws (10,000 readers: about 3,720)."""
    sets = (1 << categories) - 1
    return round(sets * (1 - (1 - 1 / sets) ** n))


def check_category_sets(path: Path, n: int) -> int:
    """Refuse a subscriber database whose ``category_set`` column does not match its categories.

    A send groups readers by ``subscribers.category_set``; left empty, a million readers look
    like one set and the send row measures one render instead of 4,095."""
    import sqlite3

    db = sqlite3.connect(path)
    try:
        readers, sets, empty = db.execute(
            "SELECT count(*), count(DISTINCT category_set), sum(category_set = '') FROM subscribers"
        ).fetchone()
        (mismatch,) = db.execute(
            "SELECT count(*) FROM subscribers s WHERE s.category_set != COALESCE((SELECT group_concat(k, ', ')"
            " FROM (SELECT category_key AS k FROM subscriber_categories c WHERE c.subscriber_id = s.id"
            " ORDER BY category_key)), '')"
        ).fetchone()
    finally:
        db.close()
    want = expected_category_sets(n)
    if readers != n or empty or mismatch or abs(sets - want) > max(3, want // 50):
        raise RuntimeError(
            f"{path}: {readers:,} readers over {sets:,} category sets ({empty or 0} empty, {mismatch} not"
            f" matching their categories); expected {n:,} over about {want:,}. Delete the file to rebuild it."
        )
    return int(sets)


@dataclass(frozen=True)
class LinkSpec:
    """The network the send runs over (the fake plays it): round trip and shared upload cap."""

    round_trip_ms: float = 0.0
    upload_mbit: float = 0.0

    @classmethod
    def parse(cls, text: str) -> LinkSpec:
        """``"150,100"``: 150 ms round trip, 100 Mbit/s up; ``""`` or ``"loopback"``: none."""
        if not text or text == "loopback":
            return cls()
        rtt, _, mbit = text.partition(",")
        return cls(float(rtt), float(mbit or 0))

    @property
    def label(self) -> str:
        if not self.round_trip_ms and not self.upload_mbit:
            return "loopback"
        up = f", {self.upload_mbit:g} Mbit/s up" if self.upload_mbit else ""
        return f"{self.round_trip_ms:g} ms round trip{up}"

    def args(self) -> list[str]:
        return ["--round-trip-ms", str(self.round_trip_ms), "--upload-mbit", str(self.upload_mbit)]


class FakeServer:
    """tests/fake_sendgrid.py --fast in its own process, so its work is not in our figures."""

    def __init__(self, link: LinkSpec | None = None) -> None:
        # What the server prints (a handler's traceback): kept, and shown with the run's figures.
        self._errors = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tests" / "fake_sendgrid.py"),
                "--fast",
                "--key",
                API_KEY,
                *(link or LinkSpec()).args(),
            ],
            stdout=subprocess.PIPE,
            stderr=self._errors,
            text=True,
        )
        assert self.proc.stdout
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise RuntimeError("the fake SendGrid server did not start")

    def errors(self) -> str:
        """The tail of what the server wrote to stderr so far ("" when it wrote nothing)."""
        self._errors.flush()
        self._errors.seek(0)
        return self._errors.read()[-4000:]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._errors.close()


def child_send(argv: list[str]) -> dict[str, Any]:
    p = argparse.ArgumentParser()
    p.add_argument("--db", required=True)
    p.add_argument("--url", default="")  # empty: prepare only (dry run)
    p.add_argument("--posts", default="")
    p.add_argument("--iter", action="store_true", help="only stream with iter_subscribers")
    p.add_argument("--postgres", default="", help="send from a fresh schema in this PostgreSQL database")
    p.add_argument("--max-in-flight", type=int, default=0, help="sender.max_in_flight (0: the default)")
    a = p.parse_args(argv)
    if a.iter:
        return stream_only(Path(a.db))
    return delivery_send(Path(a.db), a.url, Path(a.posts), a.postgres, a.max_in_flight)


def _rss_mb() -> float:
    """Peak resident set size of this process so far, in MB.

    VmHWM from /proc (Linux): ru_maxrss would also count the parent's memory at fork time,
    since Linux carries the high-water mark across exec.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PssSampler:
    """The peak of the send's processes' memory together, sampled every 100 ms: this process and
    the personalization worker, each by its PSS (proportional set size: pages shared between
    them, such as the interpreter and libraries, counted once). Summing each process's VmHWM
    counts those twice and is an upper bound; this is what the machine holds."""

    def __init__(self, others: Callable[[], list[int]]) -> None:
        self.others = others
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _pss_kb(pid: int | str) -> int:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return 0

    def _sample(self) -> None:
        kb = self._pss_kb("self") + sum(self._pss_kb(pid) for pid in self.others())
        self.peak_mb = max(self.peak_mb, kb / 1024)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self._sample()

    def start(self) -> None:
        self._sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def stream_only(db: Path) -> dict[str, Any]:
    """digest.subscribers.iter_subscribers over every active reader: the product's streaming API."""
    from digest.store import open_store
    from digest.subscribers import iter_subscribers

    scratch = Path(tempfile.mkdtemp(prefix="digest-stream-"))
    store = open_store(bench_config(scratch), url=f"sqlite:///{db}")
    base = _rss_mb()
    t = time.perf_counter()
    n = sum(1 for _ in iter_subscribers(store))
    wall = time.perf_counter() - t
    store.dispose()
    shutil.rmtree(scratch, ignore_errors=True)
    return {"wall": wall, "n": n, "base_rss_mb": base, "peak_rss_mb": _rss_mb()}


def postgres_copy(db: Path, base_url: str) -> tuple[str, Callable[[], None]]:
    """The SQLite bench database's readers in a fresh schema of ``base_url`` (setup, not timed):
    the URL that selects the schema, and a function that drops it."""
    import sqlite3

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from digest.store import open_store

    schema = f"bench_{os.getpid()}_{int(time.time())}"
    admin = create_engine(base_url)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    url_text = url.render_as_string(hide_password=False)
    scratch = Path(tempfile.mkdtemp(prefix="digest-pg-"))
    store = open_store(bench_config(scratch), url=url_text)  # migrations
    source = sqlite3.connect(db)
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        cols = "id, email, email_key, name, status, created_at, updated_at, confirmed_at, category_set"
        with cur.copy(f"COPY subscribers ({cols}) FROM STDIN") as copy:
            for row in source.execute(f"SELECT {cols} FROM subscribers"):
                copy.write_row([*row[:5], *(f"{t}+00" if t else None for t in row[5:8]), row[8]])
        with cur.copy("COPY subscriber_categories (subscriber_id, category_key) FROM STDIN") as copy:
            for row in source.execute("SELECT subscriber_id, category_key FROM subscriber_categories"):
                copy.write_row(row)
        cur.execute("SELECT setval(pg_get_serial_sequence('subscribers', 'id'), max(id)) FROM subscribers")
        raw.commit()
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
        source.close()
        store.dispose()
        shutil.rmtree(scratch, ignore_errors=True)

    def drop() -> None:
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return url_text, drop


def delivery_send(
    db: Path, url: str, posts_folder: Path, postgres: str = "", max_in_flight: int = 0
) -> dict[str, Any]:
    """The product's path: digest.send.delivery.deliver with the SendGrid backend (real client).

    Works on a copy of the cached database (a send writes deliveries, batches and the ledger);
    the copy is not timed. ``url`` empty: a dry run (every batch body built, nothing posted),
    still against a fake server, since a dry run asks SendGrid for its suppression lists.
    """
    from digest.posts import load_posts
    from digest.send.personalize import PersonalizationPool
    from digest.send.sendgrid import SendGridSender
    from digest.store import open_store
    from digest.weekly import send as deliver  # plan (build, render, check) and deliver

    # The worker process (big sends) has memory and CPU of its own: read them before it exits.
    worker: dict[str, float] = {}
    close = PersonalizationPool.close

    def close_and_measure(pool: PersonalizationPool) -> None:
        status = Path(f"/proc/{pool._proc.pid}/status").read_text()
        worker["peak_rss_mb"] = (
            next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmHWM:")) / 1024
        )
        fields = Path(f"/proc/{pool._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        worker["cpu"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        close(pool)

    PersonalizationPool.close = close_and_measure  # type: ignore[method-assign]
    pools: list[PersonalizationPool] = []
    init = PersonalizationPool.__init__

    def init_and_note(pool: PersonalizationPool, *args: Any, **kwargs: Any) -> None:
        init(pool, *args, **kwargs)
        pools.append(pool)

    PersonalizationPool.__init__ = init_and_note  # type: ignore[method-assign]
    pss = PssSampler(lambda: [p._proc.pid for p in pools])
    scratch = Path(tempfile.mkdtemp(prefix="digest-deliver-"))
    copy = scratch / "digest.db"
    drop: Callable[[], None] | None = None
    if postgres:
        db_url, drop = postgres_copy(db, postgres)
    else:
        shutil.copyfile(db, copy)
        db_url = f"sqlite:///{copy}"
    os.environ["DIGEST_SECRET"] = SECRET
    os.environ["SENDGRID_API_KEY"] = API_KEY
    config = bench_config(scratch)
    # 1: the sequential path (one request in flight), the baseline of --baseline-runs
    in_flight = max_in_flight or os.environ.get("DIGEST_BENCH_MAX_IN_FLIGHT")
    if in_flight:
        from dataclasses import replace

        config = replace(config, sender=replace(config.sender, max_in_flight=int(in_flight)))
    dry = not url
    server = FakeServer() if dry else None
    host = server.url if server else url
    try:
        store = open_store(config, url=db_url)
        loaded = load_posts(posts_folder, tz=config.tz)
        sender = SendGridSender(API_KEY, host=host, from_email="brief@example.com", max_retries=2)
        end = datetime(2026, 1, 9, tzinfo=config.tz)
        base_rss = _rss_mb()
        pss.start()
        t0 = time.perf_counter()
        summary = deliver(
            config,
            store,
            as_of=end,
            edition_id="2026-W02",
            window=(end - timedelta(days=7), end),
            posts=loaded,
            sender=sender,
            sender_name="sendgrid",
            dry_run=dry,
        )
        wall = time.perf_counter() - t0
        pss.stop()
        with store.reading() as c:
            sent, unique = c.exec_driver_sql(
                "SELECT count(*), count(DISTINCT subscriber_id) FROM deliveries"
                " WHERE edition_id = '2026-W02' AND state = 'sent'"
            ).one()
            states = dict(
                c.exec_driver_sql(
                    "SELECT state, count(*) FROM deliveries WHERE edition_id = '2026-W02' GROUP BY state"
                ).all()
            )
        store.dispose()
    finally:
        if server is not None:
            server.close()
        if drop is not None:
            drop()
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "path": "digest.send.delivery.deliver",
        "database": "postgresql" if postgres else "sqlite",
        "max_in_flight": config.sender.max_in_flight,
        "wall": wall,
        "cpu": time.process_time(),
        "recipients": summary.sent,
        "unique": summary.sent if dry else unique,
        "db_sent_rows": sent,
        "sets": summary.category_sets,
        "renders": summary.renders,
        "requests": summary.batches,
        "client_requests": sender.requests,
        "failed": summary.failed_total,
        "skipped": summary.skipped_total,
        "undecided": summary.undecided,
        "stopped": summary.stopped,
        "notes": list(summary.notes),
        "states": states,
        "base_rss_mb": base_rss,
        "peak_rss_mb": _rss_mb(),
        "peak_pss_all_mb": pss.peak_mb,
        "worker": worker,
        "parts": {},
    }


def fake_stats(url: str) -> dict[str, Any]:
    from urllib.request import urlopen

    with urlopen(url + "/_fake/stats", timeout=10) as response:
        return json.loads(response.read())


def _send_runs(
    n: int,
    db: Path,
    posts_folder: Path,
    reps: int,
    dry_runs: int = 1,
    link: LinkSpec | None = None,
    postgres: str = "",
    max_in_flight: int = 0,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    flag: list[str] = ["--postgres", postgres] if postgres else []
    if max_in_flight:
        flag += ["--max-in-flight", str(max_in_flight)]
    dry, full = [], []
    for rep in range(reps):
        if rep < dry_runs:
            dry.append(child(["send", "--db", str(db), "--posts", str(posts_folder), *flag], timeout=3600))
        server = FakeServer(link)
        try:
            result = child(
                ["send", "--db", str(db), "--url", server.url, "--posts", str(posts_folder), *flag],
                timeout=3600,
            )
            result["server"] = fake_stats(server.url)
            result["server_errors"] = server.errors()
            if result["server_errors"] or result.get("undecided") or result.get("stopped"):
                print(
                    f"send of {n:,}: undecided {result.get('undecided')}, stopped {result.get('stopped')!r}, "
                    f"states {result.get('states')}, the fake's stderr:\n{result['server_errors']}",
                    file=sys.stderr,
                )
        finally:
            server.close()
        full.append(result)
    return dry, full


def _each_once(runs: list[dict[str, Any]], n: int, sets: int | None) -> bool:
    """Every run delivered each of the ``n`` readers exactly once, by the fake's own counts and
    by ``deliveries``, over the expected number of category sets."""
    return all(
        r["server"]["personalizations"] == n
        and r["server"]["rejected"] == 0
        and r["server"]["repeated_recipients"] == 0
        and r["unique"] == n
        and (sets is None or r["sets"] == sets)
        for r in runs
    )


def _rss_all(run: dict[str, Any]) -> float:
    """All processes of a send together: the main process's peak plus the personalization worker's."""
    return float(run["peak_rss_mb"] + (run.get("worker") or {}).get("peak_rss_mb", 0.0))


def _send_figures(
    n: int,
    label: str,
    dry: list[dict[str, Any]],
    full: list[dict[str, Any]],
    sets: int | None = None,
    bar_s: float | None = None,
    sequential: list[dict[str, Any]] | None = None,
) -> list[Figure]:
    """The rows of one send size. ``sequential``: runs of the same send with one request in
    flight (``--baseline-runs``); the end-to-end ratio is then its median over ours."""
    last = full[-1]
    server = last["server"]
    delivered_ok = _each_once(full, n, sets)
    wall = [r["wall"] for r in full]
    rss = [r["peak_rss_mb"] for r in full]
    rss_all = [_rss_all(r) for r in full]
    if bar_s is None and n >= 1_000_000:
        bar_s = TARGET_SEND_1M_S
    target = f"<= {bar_s:.0f} s, <= {TARGET_SEND_MB:.0f} MB" if bar_s else f"<= {TARGET_SEND_MB:.0f} MB"
    met = (
        max(rss_all) <= TARGET_SEND_MB
        and delivered_ok
        and (bar_s is None or statistics.median(wall) <= bar_s)
    )
    figures = [
        Figure(
            f"send ({label}): end to end",
            f"{n:,} subscribers, {last['sets']} category sets, {last['requests']} requests",
            "s",
            wall,
            baseline="sequential: 1 request in flight"
            if sequential
            else "prepare only (dry run)"
            if dry
            else "",
            ratio=statistics.median(r["wall"] for r in sequential) / statistics.median(wall)
            if sequential
            else statistics.median(wall) / statistics.median(r["wall"] for r in dry)
            if dry
            else None,
            target=target,
            met=met,
            note=f"{last['path']}; {server['personalizations']:,} delivered, each once: "
            f"{'yes' if delivered_ok else 'NO'}; rejected by the fake server: {server['rejected']}; "
            f"{server['bytes'] / 2**20:,.0f} MB posted; CPU {statistics.median(r['cpu'] for r in full):.1f} s"
            + (
                f" (+ worker process {statistics.median(r['worker']['cpu'] for r in full):.1f} s)"
                if all(r.get("worker") for r in full)
                else ""
            ),
            extra={"runs_detail": full, "dry_detail": dry, "server": server},
        ),
        *(
            [
                Figure(
                    f"  baseline: sequential send ({label})",
                    f"{n:,} subscribers, max_in_flight 1",
                    "s",
                    [r["wall"] for r in sequential],
                    note=f"each once: {'yes' if _each_once(sequential, n, sets) else 'NO'}; CPU "
                    f"{statistics.median(r['cpu'] for r in sequential):.1f} s; peak RSS, all processes "
                    f"{max(_rss_all(r) for r in sequential):.0f} MB",
                    extra={"runs_detail": sequential},
                )
            ]
            if sequential
            else []
        ),
        Figure(
            f"  send ({label}): prepare only (dry run)",
            f"{n:,} subscribers" if dry else "not run (--quick)",
            "s",
            [r["wall"] for r in dry],
        ),
        Figure(
            f"  send ({label}): peak RSS",
            f"{n:,} subscribers",
            "MB",
            rss,
            note=f"after imports and setup {statistics.median(r['base_rss_mb'] for r in full):.0f} MB"
            + (
                f"; the worker process's own peak {max(r['worker']['peak_rss_mb'] for r in full):.0f} MB"
                if all(r.get("worker") for r in full)
                else ""
            ),
        ),
        Figure(
            f"  send ({label}): peak RSS, all processes",
            f"{n:,} subscribers",
            "MB",
            rss_all,
            note="main + personalization worker (sum of their peaks: an upper bound)",
        ),
        Figure(
            f"  send ({label}): peak PSS, all processes",
            f"{n:,} subscribers",
            "MB",
            [r.get("peak_pss_all_mb", float("nan")) for r in full],
            note="sampled every 100 ms, main + worker together, shared pages counted once",
        ),
        Figure(f"  send ({label}): messages/s", f"{n:,} subscribers", "msg/s", [n / w for w in wall]),
    ]
    if dry and dry[0]["parts"]:
        parts = {k: statistics.median(r["parts"][k] for r in dry) for k in dry[0]["parts"]}
        figures.append(
            Figure(
                f"  send ({label}): dry run parts",
                f"{n:,} subscribers",
                "s",
                [sum(parts.values())],
                note=", ".join(f"{k} {v:.2f} s" for k, v in parts.items()),
            )
        )
    return figures


# Issue 12's bar for a send over a real link (150 ms round trip, 100 Mbit/s up), by size.
LINK_BAR_S = {10_000: 30.0, 1_000_000: 90.0}


def bench_send(
    sizes: Sequence[int],
    runs: int,
    posts_folder: Path,
    real_max: int,
    link: LinkSpec | None = None,
    postgres: str = "",
    baseline_runs: int = 0,
    skip_databases: Sequence[str] = (),
) -> list[Figure]:
    """Each size (up to ``real_max``): ``runs`` sends through digest.send.delivery, each on a fresh
    copy of the database, and one dry run; then the subscriber stream alone.

    ``link``: the fake plays that network (no dry run then: it posts nothing, so the link
    changes nothing in it). ``postgres``: the same sends again from a PostgreSQL copy."""
    link = link or LinkSpec()
    over_link = link != LinkSpec()
    figures = []
    for n in sizes:
        db = subscriber_db(n)
        sets = check_category_sets(db, n)
        if n <= real_max:
            databases = ("sqlite", "postgresql") if postgres else ("sqlite",)
            for database in [d for d in databases if d not in skip_databases]:
                dry, full = _send_runs(
                    n,
                    db,
                    posts_folder,
                    runs,
                    dry_runs=0 if over_link else 1,
                    link=link,
                    postgres=postgres if database == "postgresql" else "",
                )
                sequential = None
                if baseline_runs:
                    _, sequential = _send_runs(
                        n,
                        db,
                        posts_folder,
                        baseline_runs,
                        dry_runs=0,
                        link=link,
                        postgres=postgres if database == "postgresql" else "",
                        max_in_flight=1,
                    )
                label = "delivery.py" + (f", {database}" if postgres else "")
                if over_link:
                    label += f", {link.label}"
                bar = LINK_BAR_S.get(n) if over_link else None
                figures += _send_figures(n, label, dry, full, sets, bar, sequential)
        else:
            figures.append(
                Figure(
                    "send (delivery.py): end to end",
                    f"{n:,} subscribers: not run",
                    "s",
                    [],
                    note=f"over --real-max {real_max:,}",
                )
            )
        streamed = child(["send", "--db", str(db), "--iter"], timeout=3600)
        figures.append(
            Figure(
                "  iter_subscribers alone (id order)",
                f"{n:,} subscribers",
                "s",
                [streamed["wall"]],
                note=f"peak RSS {streamed['peak_rss_mb']:.0f} MB (after imports {streamed['base_rss_mb']:.0f} MB)",
            )
        )
    return figures


# --- the table ------------------------------------------------------------------------------------------


def fmt(value: float, unit: str) -> str:
    if value != value:  # nan
        return "-"
    if unit == "ms":
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    if unit == "s":
        return f"{value:.3f}" if value < 10 else f"{value:.2f}"
    if unit == "msg/s":
        return f"{value:,.0f}"
    return f"{value:.1f}"


def table(figures: Sequence[Figure]) -> str:
    rows = [("stage", "input", "unit", "median", "min", "max", "n", "vs baseline", "target", "met")]
    for f in figures:
        ratio = ""
        if f.ratio is not None:
            ratio = f"{f.ratio:.1f}x" if f.ratio >= 1 else f"{f.ratio:.2f}x"
        met = "" if f.met is None else ("yes" if f.met else "NO")
        s = f.samples
        rows.append(
            (
                f.stage,
                f.input,
                f.unit,
                fmt(f.median, f.unit),
                fmt(min(s), f.unit) if s else "-",
                fmt(max(s), f.unit) if s else "-",
                str(len(s)),
                ratio,
                f.target,
                met,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    widths[1] = min(widths[1], 70)
    lines = []
    for j, r in enumerate(rows):
        cells = [
            r[i][: widths[i]].ljust(widths[i]) if i < 2 else r[i].rjust(widths[i]) for i in range(len(r))
        ]
        lines.append(" | ".join(cells).rstrip())
        if j == 0:
            lines.append("-+-".join("-" * w for w in widths))
    notes = [f"- {f.stage.strip()}: {f.note}" for f in figures if f.note]
    return "\n".join(lines) + "\n\nNotes:\n" + "\n".join(notes)


def environment() -> dict[str, Any]:
    import importlib.metadata as md

    versions = {}
    for name in (
        "digest",
        "jinja2",
        "mjml-python",
        "python-frontmatter",
        "PyYAML",
        "markdown-it-py",
        "sendgrid",
    ):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[name] = md.version(name)
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "commit": git.stdout.strip(),
        "load_average_at_start": load_average(),
        "versions": versions,
    }


# --- main ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--corpora", type=Path, help="folder holding nodejs-blog/ and opensuse-news/ (else synthetic)"
    )
    parser.add_argument("--quick", action="store_true", help="fewer runs and sizes: about a minute")
    parser.add_argument(
        "--subscribers", help="send sizes, comma-separated (default 10000,100000; quick 10000)"
    )
    parser.add_argument("--json", type=Path, default=BENCH / "results" / "latest.json")
    parser.add_argument(
        "--runs",
        type=int,
        help="runs per figure for the slow stages (default 5; quick: 2 for posts, 1 for sends)",
    )
    parser.add_argument(
        "--real-max",
        type=int,
        help="largest send run through digest.send.delivery (default: every size)",
    )
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated stages to skip: posts,render,send,growth; 'sqlite' keeps only the "
        "PostgreSQL sends of --postgres",
    )
    parser.add_argument(
        "--link",
        default="",
        help="sends over a played network: 'RTT_MS,MBIT_UP', e.g. 150,100 (default: loopback)",
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get("DIGEST_BENCH_POSTGRES_URL", ""),
        help="also send from PostgreSQL (a fresh schema per run): a SQLAlchemy URL "
        "(default $DIGEST_BENCH_POSTGRES_URL)",
    )
    parser.add_argument("--send-runs", type=int, help="runs per send size (default 3; quick 1)")
    parser.add_argument(
        "--baseline-runs",
        type=int,
        default=0,
        help="also run each send this many times with one request in flight (the sequential "
        "path, sender.max_in_flight = 1) as its baseline in the same run (default 0: none)",
    )
    args = parser.parse_args(argv)

    runs = args.runs or (3 if args.quick else 5)
    fast_runs = 100 if args.quick else 300
    sizes = [
        int(s.replace("_", ""))
        for s in (args.subscribers or ("10000" if args.quick else "10000,100000")).split(",")
    ]
    skip = set(filter(None, args.skip.split(",")))
    sys.path.insert(0, str(BENCH))
    env = environment()
    print(
        f"digest bench: {env['machine']}, Python {env['python']}, commit {env['commit']}, "
        f"load average {env['load_average_at_start']}",
        file=sys.stderr,
    )
    started = time.perf_counter()
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="digest-bench-") as tmp:
        scratch = Path(tmp)
        label = "2 real corpora" if args.corpora else "synthetic"
        folders = corpus_folders(args.corpora.resolve() if args.corpora else None, scratch, 3300)
        config = bench_config(scratch)
        from zoneinfo import ZoneInfo

        from digest.posts import load_posts

        posts = [p for f in folders for p in load_posts(f, tz=ZoneInfo("UTC")).posts]
        if "posts" not in skip:
            print("posts...", file=sys.stderr)
            figures += bench_posts(folders, 2 if args.quick else runs, scratch, label)
            figures.append(
                bench_summarize_all(folders, 1 if args.quick else 3, label, 300 if args.quick else None)
            )
        if "render" not in skip:
            print("render...", file=sys.stderr)
            node = NodeMjml()
            try:
                figures += bench_render(config, posts, fast_runs, node, label)
            finally:
                node.close()
        send_posts = synthetic_posts(scratch / "send-posts", 60, SEED + 3)
        if "render" not in skip:
            figures += bench_all_sets(config, send_posts, 1 if args.quick else 3, 40 if args.quick else 400)
        if "send" not in skip:
            print("send...", file=sys.stderr)
            real_max = args.real_max if args.real_max is not None else 10**12
            send_runs = args.send_runs or (1 if args.quick else 3)
            figures += bench_send(
                sizes,
                send_runs,
                send_posts,
                real_max,
                LinkSpec.parse(args.link),
                args.postgres,
                args.baseline_runs,
                [d for d in ("sqlite",) if d in skip],
            )
        if "growth" not in skip:
            print("growth...", file=sys.stderr)
            figures += growth_posts(
                scratch, (300, 1000) if args.quick else (1000, 3000, 10000), 1 if args.quick else 3
            )
            figures += growth_render(config, posts, 20 if args.quick else 100)
    env["load_average_at_end"] = load_average()
    env["seconds"] = round(time.perf_counter() - started, 1)
    env["delivery_path"] = "digest.send.delivery"
    print(table(figures))
    print(
        f"\n{env['machine']}, Python {env['python']}, commit {env['commit']}; load average "
        f"{env['load_average_at_start']} -> {env['load_average_at_end']}; bench took {env['seconds']} s"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"environment": env, "figures": [f.as_json() for f in figures]}, indent=1) + "\n"
    )
    print(f"figures written to {args.json}")
    return 0


def _child_main(argv: list[str]) -> int:
    sys.path.insert(0, str(BENCH))
    kind, rest = argv[0], argv[1:]
    if kind == "posts":
        result = child_posts(rest)
    elif kind == "send":
        result = child_send(rest)
    else:
        raise SystemExit(f"unknown child {kind}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(_child_main(sys.argv[2:]))
    sys.exit(main())
