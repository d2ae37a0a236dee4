"""Time the first stages of the pipeline over a folder of posts: load (cold, warm), select, summarize.

Usage: python bench/pipeline_posts.py ../shared/corpora/opensuse-news/_posts [--runs 5] [--tz UTC]

Each figure is the median of several runs, as wall time and as this process's CPU time (the
machine may be shared; CPU time is the steadier of the two). "cold" is a load with an empty cache
folder, "warm" a load whose cache is up to date. The counts show what was used and why anything
was skipped.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from digest.permalink import post_url
from digest.posts import load_posts
from digest.select import choose, window_for
from digest.summarize import summarize

ONE_DAY = timedelta(days=1)


def timed(fn: Callable[[], Any], runs: int) -> tuple[Any, float, float]:
    """Median wall and CPU seconds of ``runs`` calls; returns the last result too."""
    walls: list[float] = []
    cpus: list[float] = []
    result = None
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return result, statistics.median(walls), statistics.median(cpus)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tz", default="UTC")
    parser.add_argument("--budget", type=int, default=70)
    args = parser.parse_args(argv)
    tz = ZoneInfo(args.tz)
    logging.basicConfig(level=logging.ERROR)

    def cold() -> Any:
        with tempfile.TemporaryDirectory() as cache:
            return load_posts(args.folder, tz=tz, cache_dir=Path(cache))

    warm_cache = Path(tempfile.mkdtemp(prefix="digest-bench-"))
    load_posts(args.folder, tz=tz, cache_dir=warm_cache)

    loaded, cold_wall, cold_cpu = timed(cold, args.runs)
    _, warm_wall, warm_cpu = timed(lambda: load_posts(args.folder, tz=tz, cache_dir=warm_cache), args.runs)
    posts = loaded.posts
    newest = max(p.date for p in posts)
    # The week that ends at the start of the day after the newest post.
    start, end = window_for(newest.replace(hour=0, minute=0, second=0, microsecond=0) + ONE_DAY, 7)
    week, sel_wall, sel_cpu = timed(
        lambda: choose(posts, start=start, end=end, categories=None, order=(), cap=10), args.runs
    )
    everything, all_wall, all_cpu = timed(
        lambda: choose(
            posts, start=newest.replace(year=1900), end=end + ONE_DAY, categories=None, order=(), cap=10**6
        ),
        args.runs,
    )
    urls = {p.path: post_url(p, base_url="https://example.com", pattern="date", tz=tz) for p in posts}
    items, sum_wall, sum_cpu = timed(
        lambda: [summarize(p, url=urls[p.path], word_budget=args.budget) for p in posts], args.runs
    )

    reasons = Counter(skip.reason for skip in loaded.skipped)
    print(f"{args.folder}: {len(posts)} posts used, {len(loaded.skipped)} skipped")
    for reason, count in reasons.most_common():
        print(f"  skipped {count}: {reason}")
    unpublished = sum(1 for p in posts if not p.published)
    print(f"  unpublished (kept, never selected): {unpublished}")
    print(f"  selected in the week {start:%Y-%m-%d}..{end:%Y-%m-%d}: {len(week.posts)}")
    print(
        f"  leads: {sum(1 for i in items if i.lead_text)} with text, {sum(i.truncated for i in items)} trimmed"
    )
    print(f"median of {args.runs} runs            wall      cpu")
    for name, wall, cpu in (
        ("load, cold (no cache)", cold_wall, cold_cpu),
        ("load, warm (cache)", warm_wall, warm_cpu),
        ("select, one week", sel_wall, sel_cpu),
        (f"select, all {len(everything.posts)} posts", all_wall, all_cpu),
        (f"summarize, all {len(items)} posts", sum_wall, sum_cpu),
    ):
        print(f"  {name:<28} {wall * 1000:8.1f} ms {cpu * 1000:8.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
