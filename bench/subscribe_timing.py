"""Can the subscribe form's timing tell a known address from a new one? (issue 15)

Starts `digest serve`'s app under uvicorn in its own process (on a fresh SQLite database with
active and bounced readers), then posts the subscribe form over one kept-alive connection, as
an attacker would: PROBES requests in a seeded random interleaving of new addresses (half),
active readers and bounced readers (a quarter each), after a warm-up. It times each answer
(request sent to body read) and reports:

- the median and 90th percentile per kind;
- how well a classifier tells known (active or bounced) from new: a threshold on the answer's
  own time, fitted on one half and scored on the other (both ways, averaged), and a 5-nearest-
  neighbour vote (leave-one-out); chance is 50% (the classes are balanced);
- the probability that a new address's answer is slower than a known one's (Mann-Whitney
  AUC, 0.5 = no signal) with its z score: what many probes of the same kind would reveal;
- the same classifiers on the time of the *next* answer on that connection, which is where
  work done after the answer (but inside the request's cycle) would show.

Compare with the code before the fix in the same run by pointing PYTHONPATH at another checkout:

    python bench/subscribe_timing.py                        # this checkout
    PYTHONPATH=/path/to/old/checkout python bench/subscribe_timing.py --label before
"""

from __future__ import annotations

import argparse
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
KINDS = ("new", "active", "bounced")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(root: Path, port: int, known: int) -> None:
    """The server side: build the database, then run the app (imported from PYTHONPATH's digest)."""
    os.chdir(root)
    import uvicorn

    import digest
    from digest import subscribers as subs
    from digest.config import load_config
    from digest.store import open_store
    from digest.web import create_app

    config = load_config(root / "config.toml")
    store = open_store(config)
    for i in range(known):
        subs.subscribe(store, config, f"active{i}@example.com", ["News"], source="bench", confirmed=True)
        subs.subscribe(store, config, f"bounced{i}@example.com", ["News"], source="bench", confirmed=True)
        subs.set_status(store, f"bounced{i}@example.com", "bounced", source="bench")
    store.dispose()
    print(f"serving digest from {Path(digest.__file__).parent}", file=sys.stderr, flush=True)
    uvicorn.run(create_app(config), host="127.0.0.1", port=port, log_level="error", access_log=False)


CONFIG = """
[site]
name = "Timing Probe"
[web]
base_url = "http://127.0.0.1:{port}"
subscribe_per_hour = 1000000
[sender]
backend = "outbox"
outbox = "outbox"
[database]
url = "sqlite:///probe.db"
[[categories]]
name = "News"
"""


def _threshold_accuracy(times: list[float], known: list[bool]) -> float:
    """Fit the best threshold (and direction) on one half, score on the other; both ways, averaged."""
    n = len(times)
    halves = (list(range(0, n, 2)), list(range(1, n, 2)))
    scores = []
    for train, test in (halves, halves[::-1]):
        best = (0.0, 0.0, True)
        for cut in sorted({times[i] for i in train}):
            for above_is_known in (True, False):
                hits = sum((times[i] > cut) == (known[i] == above_is_known) for i in train)
                if hits / len(train) > best[0]:
                    best = (hits / len(train), cut, above_is_known)
        _, cut, above_is_known = best
        scores.append(sum((times[i] > cut) == (known[i] == above_is_known) for i in test) / len(test))
    return statistics.mean(scores)


def _auc(times: list[float], known: list[bool]) -> tuple[float, float]:
    """P(a new probe is slower than a known one) (Mann-Whitney U / n1 n2; 0.5 = no signal), and its z."""
    ranked = sorted(range(len(times)), key=lambda i: times[i])
    ranks = [0.0] * len(times)
    i = 0
    while i < len(ranked):  # average ranks over ties
        j = i
        while j + 1 < len(ranked) and times[ranked[j + 1]] == times[ranked[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[ranked[k]] = (i + j) / 2 + 1
        i = j + 1
    n_new = sum(not k for k in known)
    n_known = len(known) - n_new
    u = sum(r for r, k in zip(ranks, known, strict=True) if not k) - n_new * (n_new + 1) / 2
    sigma = (n_new * n_known * (n_new + n_known + 1) / 12) ** 0.5
    return u / (n_new * n_known), (u - n_new * n_known / 2) / sigma


def _knn_accuracy(times: list[float], known: list[bool], k: int = 5) -> float:
    """Leave-one-out k-nearest-neighbour vote on the time alone."""
    hits = 0
    for i, t in enumerate(times):
        nearest = sorted((abs(t - u), j) for j, u in enumerate(times) if j != i)[:k]
        votes = sum(known[j] for _, j in nearest)
        hits += (votes * 2 > k) == known[i]
    return hits / len(times)


def probe(port: int, probes: int, known: int, seed: int, warmup: int) -> dict[str, object]:
    import httpx

    rng = random.Random(seed)
    kinds = ["new"] * (probes // 2) + ["active"] * (probes // 4)
    kinds += ["bounced"] * (probes - len(kinds))
    rng.shuffle(kinds)
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=30.0) as client:
        deadline = time.monotonic() + 60
        while True:
            try:
                page = client.get("/")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        match = CSRF_RE.search(page.text)
        assert match, "no CSRF token on the subscribe page"
        token = match.group(1)

        def post(email: str) -> float:
            start = time.perf_counter()
            response = client.post(
                "/subscribe", data={"email": email, "category": "News", "csrf_token": token}
            )
            elapsed = time.perf_counter() - start
            assert response.status_code == 200, (response.status_code, response.text[:300])
            return elapsed

        for i in range(warmup):
            post(f"warmup{i}@example.org")
        times: list[float] = []
        for i, kind in enumerate(kinds):
            n = rng.randrange(known)
            email = {"new": f"new{i}@example.net", "active": f"active{n}@example.com"}.get(
                kind, f"bounced{n}@example.com"
            )
            times.append(post(email))
        times.append(post("tail@example.org"))  # so the last probe has a "next answer" too
    is_known = [k != "new" for k in kinds]
    own = times[:-1]
    following = times[1:]
    per_kind = {
        kind: {
            "median_ms": 1000 * statistics.median([t for t, k in zip(own, kinds, strict=True) if k == kind]),
            "p90_ms": 1000
            * statistics.quantiles([t for t, k in zip(own, kinds, strict=True) if k == kind], n=10)[-1],
            "n": kinds.count(kind),
        }
        for kind in KINDS
    }
    return {
        "per_kind": per_kind,
        "threshold_own": _threshold_accuracy(own, is_known),
        "auc_own": _auc(own, is_known),
        "knn_own": _knn_accuracy(own, is_known),
        "threshold_next": _threshold_accuracy(following, is_known),
        "knn_next": _knn_accuracy(following, is_known),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--probes", type=int, default=500)
    parser.add_argument("--known", type=int, default=200, help="active and bounced readers each")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.known)
        return
    with tempfile.TemporaryDirectory(prefix="digest-probe-") as tmp:
        root = Path(tmp)
        port = _free_port()
        (root / "config.toml").write_text(CONFIG.format(port=port), encoding="utf-8")
        env = {**os.environ, "DIGEST_SECRET": "probe-secret-0123456789-abcdefghijklmnopqrstuv"}
        env.pop("DIGEST_DATABASE_URL", None)
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(root), "--port", str(port), "--known", str(args.known)],
            env=env,
        )
        try:
            result = probe(port, args.probes, args.known, args.seed, args.warmup)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"\nsubscribe timing probe ({args.label}): {args.probes} probes, seed {args.seed}")
    print(f"{'kind':<8} {'n':>4} {'median ms':>10} {'p90 ms':>8}")
    for kind, row in result["per_kind"].items():  # type: ignore[attr-defined]
        print(f"{kind:<8} {row['n']:>4} {row['median_ms']:>10.2f} {row['p90_ms']:>8.2f}")
    print("known-vs-new accuracy (chance 50%):")
    print(
        f"  from the answer's own time:  threshold {result['threshold_own']:.1%}, 5-NN {result['knn_own']:.1%}"
    )
    auc, z = cast(tuple[float, float], result["auc_own"])
    print(
        f"  P(a new answer is slower than a known one) {auc:.3f} (0.5 = no signal), z = {z:+.1f} (|z| > 2: a difference)"
    )
    print(
        f"  from the next answer's time: threshold {result['threshold_next']:.1%}, 5-NN {result['knn_next']:.1%}"
    )


if __name__ == "__main__":
    main()
