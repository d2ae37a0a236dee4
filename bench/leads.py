"""Leads by the rubric, per folder: how many are empty, leak markup, open with a credit line,
end on a dangling colon, stop mid-sentence or merge paragraphs; and the time per post.

Usage: python bench/leads.py ../shared/corpora/nodejs-blog/blog ../shared/corpora/hugo-news/news ...
       [--show "dangling colon"] [--budget 70]

A lead counts as clean when it has none of these problems (GOOD or OK in the issue's rubric; the
rest, "which paragraph would an editor pick", is what the graded set in tests/ holds).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

from digest.lead.rubric import PROBLEMS, problems
from digest.permalink import post_url
from digest.posts import load_posts
from digest.summarize import summarize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--budget", type=int, default=70)
    parser.add_argument("--show", default="", help="print the leads with this problem (or 'all')")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    tz = ZoneInfo("UTC")
    header = f"{'folder':<28} {'posts':>5} {'clean':>6} " + " ".join(f"{p[:12]:>12}" for p in PROBLEMS)
    print(header + f" {'ms/post':>8}")
    for folder in args.folders:
        posts = load_posts(folder, tz=tz).posts
        counts: Counter[str] = Counter()
        clean = 0
        started = time.process_time()
        items = [
            summarize(
                p,
                url=post_url(p, base_url="https://example.com", pattern="date", tz=tz),
                word_budget=args.budget,
            )
            for p in posts
        ]
        per_post = (time.process_time() - started) * 1000 / max(1, len(posts))
        shown = []
        for item in items:
            found = {name for name, _ in problems(item)}
            counts.update(found)
            clean += not found
            if args.show and (args.show == "all" or args.show in found):
                shown.append(item)
        name = "/".join(folder.resolve().parts[-2:])
        row = f"{name:<28} {len(items):>5} {100 * clean / max(1, len(items)):>5.1f}% "
        print(row + " ".join(f"{counts[p]:>12}" for p in PROBLEMS) + f" {per_post:>8.2f}")
        for item in shown:
            print(f"\n--- {item.post_path}: {item.title}\n{item.lead_text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
