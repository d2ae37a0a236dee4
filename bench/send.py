"""Send benchmark: synthetic subscribers over 12 categories, sent to the fake SendGrid.

    python bench/send.py [--subscribers 10000,100000,1000000] [--seed 1] [--profile FILE]

Each size runs in its own child process (so peak RSS, the VmHWM high-water mark, is that size's
alone): builds a SQLite database in a temporary folder (random category sets of 1-4 of 12,
seeded; raw executemany, not counted), starts tests/fake_sendgrid.py in fast mode in another
process (so its work does not share our GIL or our figures), runs the real delivery engine with
the real sendgrid client, and checks with the server's counters that exactly N distinct
recipients were accepted, none twice, no request over 1,000 personalizations and none rejected
(one request in 50 is fully validated against SendGrid's published rules). Prints one line per
size and the JSON of every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
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


def populate(db: Path, n: int, rng: random.Random) -> None:
    """Readers straight through sqlite3 (executemany of tuples): setup, not what is measured."""
    import sqlite3

    from digest.config import category_key
    from digest.subscribers import category_set_label

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    keys = [category_key(c) for c in CATEGORIES]
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    chunk = 50_000
    with conn:
        for start in range(0, n, chunk):
            subs, cats = [], []
            for i in range(start, min(n, start + chunk)):
                email = f"reader{i:07d}@example.org"
                mine = rng.sample(keys, rng.randint(1, 4))
                label = category_set_label(mine)
                subs.append((i + 1, email, email, "", "active", now, now, now, label))
                cats.extend((i + 1, key) for key in mine)
            conn.executemany(
                "INSERT INTO subscribers (id, email, email_key, name, status, created_at, updated_at, "
                "confirmed_at, category_set) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                subs,
            )
            conn.executemany(
                "INSERT INTO subscriber_categories (subscriber_id, category_key) VALUES (?, ?)", cats
            )
    conn.execute("ANALYZE")
    conn.close()


def _hwm_mb() -> float:
    """This process's peak resident set (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def start_fake() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_sendgrid.py"), "--fast", "--key", KEY],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def run_one(n: int, seed: int, profile: str | None) -> dict[str, object]:
    """One size, in this process: setup (not counted), then deliver() timed, then the server's counts."""
    rng = random.Random(seed)
    from digest.config import config_from_dict
    from digest.store import open_store
    from digest.weekly import send as deliver

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
    store.dispose()
    t0 = time.perf_counter()
    populate(tmp / "bench.db", n, rng)
    setup = time.perf_counter() - t0

    proc, url = start_fake()
    os.environ["SENDGRID_API_KEY"] = KEY
    os.environ["SENDGRID_API_HOST"] = url
    try:
        rss_before = _hwm_mb()
        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        t0, cpu0 = time.perf_counter(), time.process_time()
        summary = deliver(config, store, as_of=AS_OF, sender_name="sendgrid")
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(f"{profile}.{n}")
        rss_after = _hwm_mb()
        with urllib.request.urlopen(f"{url}/_fake/stats") as r:
            stats = json.load(r)
        with store.reading() as c:
            rows = c.exec_driver_sql(
                "SELECT count(*), count(DISTINCT subscriber_id) FROM deliveries WHERE state = 'sent'"
            ).one()
    finally:
        proc.terminate()
        proc.wait()
        store.dispose()
        shutil.rmtree(tmp, ignore_errors=True)

    exactly_once = (
        stats["distinct_recipients"] == n
        and stats["repeated_recipients"] == 0
        and stats["personalizations"] == n
        and stats["rejected"] == 0
        and stats["max_personalizations"] <= 1000
        and rows[0] == rows[1] == n
        and summary.sent == n
    )
    return {
        "subscribers": n,
        "setup_seconds": round(setup, 2),
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),  # this process only; the machine may be shared
        "load_average": round(os.getloadavg()[0], 2),
        "sent": summary.sent,
        "skipped": dict(summary.skipped),
        "failed": dict(summary.failed),
        "category_sets": summary.category_sets,
        "renders": summary.renders,
        "batches": summary.batches,
        "requests_made": summary.requests,
        "server_mail_requests_accepted": stats["accepted"],
        "server_personalizations": stats["personalizations"],
        "server_distinct_recipients": stats["distinct_recipients"],
        "server_repeated_recipients": stats["repeated_recipients"],
        "server_max_personalizations": stats["max_personalizations"],
        "server_rejected": stats["rejected"],
        "server_problems": stats["problems"],
        "deliveries_sent_rows": rows[0],
        "exactly_once": exactly_once,
        "megabytes_sent": round(stats["bytes"] / 1e6, 1),
        "messages_per_second": round(summary.sent / wall),
        "peak_rss_mb": round(rss_after, 1),
        "rss_before_send_mb": round(rss_before, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", default="10000,100000", help="sizes, comma-separated")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", help="write cProfile stats to FILE.<size>")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    sizes = [int(x) for x in args.subscribers.split(",") if x.strip()]
    if args.one:
        print(json.dumps(run_one(sizes[0], args.seed, args.profile)))
        return
    results = []
    print(f"{'readers':>9} {'wall s':>7} {'CPU s':>7} {'peak MB':>8} {'requests':>8} {'msgs/s':>8}  once")
    for n in sizes:
        cmd = [sys.executable, __file__, "--one", "--subscribers", str(n), "--seed", str(args.seed)]
        if args.profile:
            cmd += ["--profile", args.profile]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        results.append(r)
        print(
            f"{n:>9} {r['wall_seconds']:>7} {r['cpu_seconds']:>7} {r['peak_rss_mb']:>8} "
            f"{r['requests_made']:>8} {r['messages_per_second']:>8}  {'yes' if r['exactly_once'] else 'NO'}",
            flush=True,
        )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
