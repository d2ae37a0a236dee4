"""Send benchmark: 100,000 synthetic subscribers over 12 categories, sent to the fake SendGrid.

    python bench/send.py [--subscribers 100000] [--seed 1] [--tracemalloc]

Builds a SQLite database in a temporary folder (random category sets of 1-4 of 12, seeded),
starts tests/fake_sendgrid.py in fast mode in another process (so its parsing does not share
our GIL), runs the real delivery engine with the real sendgrid client, and prints wall time,
peak memory, requests made and messages per second. Setup time is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CATEGORIES = [
    "US", "Europe", "Asia", "Markets", "Technology", "Climate",
    "Science", "Health", "Culture", "Sport", "Travel", "Opinion",
]  # fmt: skip
AS_OF = datetime(2026, 1, 9, 12, 0, tzinfo=UTC)
KEY = "SG.bench-key"


def write_posts(folder: Path, rng: random.Random) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(36):
        cats = ", ".join(rng.sample(CATEGORIES, rng.randint(1, 2)))
        when = AS_OF - timedelta(hours=rng.randint(2, 24 * 6))
        body = " ".join(f"Sentence {j} of post {i} says something worth reading." for j in range(30))
        (folder / f"post-{i:02d}.md").write_text(
            f'---\ntitle: "Post number {i}"\ncategories: [{cats}]\ndate: {when:%Y-%m-%d %H:%M}\n---\n\n{body}\n',
            encoding="utf-8",
        )


def populate(store, n: int, rng: random.Random) -> None:  # type: ignore[no-untyped-def]
    from digest.config import category_key
    from digest.store import subscriber_categories, subscribers

    now = datetime.now(UTC)
    keys = [category_key(c) for c in CATEGORIES]
    chunk = 20_000
    for start in range(0, n, chunk):
        subs, cats = [], []
        for i in range(start, min(n, start + chunk)):
            email = f"reader{i:07d}@example.org"
            subs.append(
                {"id": i + 1, "email": email, "email_key": email, "name": "", "status": "active",
                 "created_at": now, "updated_at": now, "confirmed_at": now}
            )  # fmt: skip
            for key in rng.sample(keys, rng.randint(1, 4)):
                cats.append({"subscriber_id": i + 1, "category_key": key})
        with store.session() as s:
            s.execute(subscribers.insert(), subs)
            s.execute(subscriber_categories.insert(), cats)


def start_fake() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_sendgrid.py"), "--fast", "--key", KEY],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tracemalloc", action="store_true", help="Python-level peak (slows the run)")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    from digest.config import config_from_dict
    from digest.send.delivery import deliver
    from digest.store import open_store

    tmp = Path(tempfile.mkdtemp(prefix="digest-bench-"))
    write_posts(tmp / "posts", rng)
    config = config_from_dict(
        {
            "site": {"name": "Bench Brief", "base_url": "https://bench.example.com",
                     "postal_address": "Bench Brief, 1 Bench Street, London N1 1AA"},
            "sender": {"backend": "sendgrid", "from_email": "brief@bench.example.com", "max_retries": 3},
            "database": {"url": f"sqlite:///{tmp / 'bench.db'}"},
            "web": {"base_url": "https://bench.example.com"},
            "posts": {"folder": str(tmp / "posts"), "cache": str(tmp / ".cache")},
            "categories": CATEGORIES,
        },
        root=tmp,
    )  # fmt: skip
    os.environ.setdefault("DIGEST_SECRET", "bench-secret-that-is-long-enough-123")
    store = open_store(config)
    t0 = time.perf_counter()
    populate(store, args.subscribers, rng)
    setup = time.perf_counter() - t0

    proc, url = start_fake()
    os.environ["SENDGRID_API_KEY"] = KEY
    os.environ["SENDGRID_API_HOST"] = url
    try:
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if args.tracemalloc:
            tracemalloc.start()
        t0, cpu0 = time.perf_counter(), time.process_time()
        summary = deliver(config, store, as_of=AS_OF, sender_name="sendgrid")
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        traced = tracemalloc.get_traced_memory()[1] if args.tracemalloc else None
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with urllib.request.urlopen(f"{url}/_fake/stats") as r:
            stats = json.load(r)
    finally:
        proc.terminate()
        proc.wait()
        store.dispose()

    result = {
        "subscribers": args.subscribers,
        "setup_seconds": round(setup, 2),
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),  # this process only; the machine may be shared
        "load_average": os.getloadavg()[0],
        "sent": summary.sent,
        "skipped": dict(summary.skipped),
        "failed": dict(summary.failed),
        "category_sets": summary.category_sets,
        "renders": summary.renders,
        "batches": summary.batches,
        "requests_made": summary.requests,
        "server_mail_requests_accepted": stats["accepted"],
        "server_personalizations": stats["personalizations"],
        "server_rejected": stats["rejected"],
        "server_problems": stats["problems"],
        "megabytes_sent": round(stats["bytes"] / 1e6, 1),
        "messages_per_second": round(summary.sent / wall),
        "peak_rss_mb": round(rss_after / 1024, 1),
        "rss_growth_during_send_mb": round((rss_after - rss_before) / 1024, 1),
        "tracemalloc_peak_mb": round(traced / 1e6, 1) if traced is not None else None,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
