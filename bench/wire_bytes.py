"""What each reader costs on the wire in a SendGrid request (issue 12: "about 730 bytes").

Builds the personalizations of N seeded readers with the real ``Personalizer`` (the code a send
uses), and prints the bytes per reader of the JSON (UTF-8), the length of one signed token and
of one unsubscribe URL, and the time per reader. Run it on two checkouts to compare:

    python bench/wire_bytes.py                                   # this checkout
    PYTHONPATH=/path/to/other/checkout python bench/wire_bytes.py --label before

Readers: addresses like ``firstname.lastname1234@mailprovider.example`` (30-45 characters, the
shape of a real list), half with a display name, ids up to the list size.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from digest.send.personalize import PersonalizationSpec, Personalizer

FIRST = ["anna", "bernd", "chloe", "dmitri", "elif", "farid", "greta", "hiro", "ines", "jonas", "kai", "lena"]
LAST = ["novak", "okafor", "petersen", "quinn", "rossi", "schmidt", "tanaka", "urbano", "vogel", "walsh"]
DOMAINS = [
    "gmail.com",
    "outlook.com",
    "yahoo.co.uk",
    "mailbox.org",
    "web.de",
    "icloud.com",
    "example-corp.com",
]


def members(n: int, *, total: int, seed: int = 7) -> list[tuple[int, str, str]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = f"{first}.{last}{rng.randint(1, 9999)}@{rng.choice(DOMAINS)}"
        name = f"{first.title()} {last.title()}" if i % 2 else ""
        out.append((rng.randint(1, total), email, name))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--readers", type=int, default=1000, help="readers per batch (SendGrid: at most 1000)"
    )
    parser.add_argument("--list-size", type=int, default=1_000_000, help="ids are drawn up to this")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--label", default="this checkout")
    args = parser.parse_args()
    spec = PersonalizationSpec(
        base_url="https://brief.example.com",
        secret="a-bench-secret-that-is-long-enough-1234",
        mailto="mailto:unsubscribe@brief.example.com?subject=unsubscribe",
        shared_args=(("edition", "2026-W02"),),
    )
    batch = members(args.readers, total=args.list_size)
    personalizer = Personalizer(spec)
    times = []
    for _ in range(args.runs):
        started = time.perf_counter()
        text = personalizer.build(batch)
        times.append(time.perf_counter() - started)
    size = len(text.encode("utf-8")) + 1  # the comma between fragments
    first = text.split('"},"headers"')[0]
    unsub = first.rsplit('"', 1)[1]
    token = unsub.rsplit("/", 1)[1]
    print(f"{args.label}: {args.readers} readers, ids up to {args.list_size:,}")
    print(f"  bytes per reader (JSON, UTF-8): {size / args.readers:.1f}")
    print(f"  one token: {len(token)} chars; one unsubscribe URL: {len(unsub)} chars")
    print(
        f"  build time per reader: median {statistics.median(times) / args.readers * 1e6:.2f} us (n={args.runs})"
    )
    print(f"  1,000,000 readers: {size / args.readers * 1e6 / 1e6:.0f} MB of personalizations")


if __name__ == "__main__":
    main()
