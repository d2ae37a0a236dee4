"""Rebuild ``caniemail-lints.json`` from a caniemail snapshot (kept so the data can be refreshed).

Usage: python -m digest.data.make_caniemail_lints path/to/caniemail-latest.json

Only the features ``digest.check`` looks for are kept, and for each only the clients that
matter most for a newsletter (Gmail, Outlook, Apple Mail), so the file stays a few KB.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# caniemail slugs that digest.check can detect in rendered HTML (see check._LINT_PATTERNS).
SLUGS = (
    "css-display-flex",
    "css-display-grid",
    "css-position",
    "css-variables",
    "css-at-keyframes",
    "css-animation",
    "css-transform",
    "css-box-shadow",
    "css-text-shadow",
    "css-linear-gradient",
    "css-unit-calc",
    "css-at-import",
    "html-svg",
    "html-video",
    "html-audio",
    "html-form",
    "html-object",
    "html-picture",
    "html-srcset",
    "image-svg",
    "image-webp",
    "image-base64",
)
CLIENTS = (
    ("gmail", "desktop-webmail", "Gmail (web)"),
    ("gmail", "ios", "Gmail (iOS)"),
    ("gmail", "android", "Gmail (Android)"),
    ("outlook", "windows", "Outlook (Windows)"),
    ("outlook", "outlook-com", "Outlook.com"),
    ("apple-mail", "ios", "Apple Mail (iOS)"),
)
OUT = Path(__file__).resolve().parent / "caniemail-lints.json"


def derive(snapshot: dict[str, Any]) -> dict[str, Any]:
    features = {f["slug"]: f for f in snapshot["features"]}
    kept = []
    for slug in SLUGS:
        feature = features[slug]
        support = {}
        for family, platform, label in CLIENTS:
            entry = feature["support"].get(family, {}).get(platform)
            if entry:
                support[label] = entry["support"]
        kept.append(
            {
                "slug": slug,
                "title": feature["title"],
                "url": feature["url"],
                "last_test_date": feature["last_test_date"],
                "support": support,
            }
        )
    return {
        "source": snapshot["source"],
        "commit": snapshot["commit"],
        "licence": snapshot["licence"],
        "support_codes": snapshot["support_codes"],
        "features": kept,
    }


def main(argv: list[str]) -> None:
    snapshot = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    OUT.write_text(json.dumps(derive(snapshot), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main(sys.argv)
