"""Screenshots of the digest email at phone (375 px) and desktop (600 px) width, light and dark.

Email clients cannot be tested by reading HTML; looking is the test. This renders a sample
edition (or takes an HTML file), opens it in Debian's headless Chromium and writes
light-375.png, light-600.png, dark-375.png and dark-600.png, plus a few numbers (page width,
colours) that tests/test_render_screenshots.py checks.

Usage:
    python scripts/screenshot.py [--html build/digest.html] [--out build/screenshots] [--posts 10]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from digest.browser import launch_chromium
from digest.config import Config, config_from_dict
from digest.model import Edition, Item, Section
from digest.render import Renderer

WIDTHS = (375, 600)
PHONE_FOLD = 667  # an iPhone SE / 8 screen: 375 x 667 CSS pixels
SCHEMES = ("light", "dark")

# A logo that needs no network: the sample must render the same everywhere.
SAMPLE_LOGO = (
    "data:image/svg+xml;utf8,<svg xmlns='http://www.w3.org/2000/svg' width='320' height='64'>"
    "<rect width='64' height='64' rx='14' fill='%230b5cad'/>"
    "<text x='32' y='45' font-size='36' font-family='Arial' font-weight='bold' fill='white' "
    "text-anchor='middle'>W</text>"
    "<text x='80' y='44' font-size='30' font-family='Arial' fill='%230b5cad'>weekly</text>"
    "</svg>"
)

_TOPICS = {
    "US": [
        "Trump to meet Colombia’s Petro in dramatic détente",
        "Senate passes stop-gap budget after all-night session",
        "What the Fed’s minutes say about rates in 2026",
    ],
    "Europe": [
        "Berlin & Paris agree a joint line on energy prices",
        "Spain’s rail network: a decade of high-speed growth",
        "Why Denmark’s pension model is being copied",
    ],
    "Tech": [
        "A practical guide to <script> tags in email (there are none)",
        "Open-source maintainers and the “bus factor”",
    ],
    "Science": [
        "Deep-sea mining: what the first licences allow",
        "A new map of the Milky Way’s spiral arms",
    ],
}

_LEAD = (
    "Former President Donald Trump’s surprise private meeting with Colombian President Gustavo "
    "Petro marks an unprecedented, media-driven reset in a relationship that has traditionally "
    "been managed through formal, congressional-backed channels. The four-hour dialogue ended "
    "with a pledge to keep security cooperation and revive <em>drug-interdiction</em> flights, "
    'and <a href="https://example.com/background">a background note</a> explains the history…'
)


def sample_config() -> Config:
    return config_from_dict(
        {"site": {"name": "The Weekly Digest", "logo_url": SAMPLE_LOGO, "timezone": "Europe/London"}},
        root=Path.cwd(),
    )


def sample_edition(posts: int = 10) -> Edition:
    """A realistic edition with ``posts`` items over four categories, some with a source credit."""
    start = datetime(2026, 1, 2, tzinfo=UTC)
    names = list(_TOPICS)
    buckets: dict[str, list[Item]] = {name: [] for name in names}
    for i in range(posts):
        category = names[i % len(names)]
        titles = _TOPICS[category]
        title = titles[(i // len(names)) % len(titles)]
        slug = f"post-{i}"
        credited = i % 3 == 0
        buckets[category].append(
            Item(
                post_path=f"{category.lower()}/{slug}.md",
                title=title if i < len(names) * 3 else f"{title} ({i})",
                url=f"https://example.com/{category.lower()}/2026/01/0{1 + i % 7}/{slug}.html",
                date=start + timedelta(hours=7 + 17 * i),
                lead_html=_LEAD,
                lead_text=_LEAD.replace("<em>", "")
                .replace("</em>", "")
                .replace('<a href="https://example.com/background">', "")
                .replace("</a>", ""),
                truncated=True,
                categories=(category,),
                source_url="https://www.ft.com/content/bc7437d7" if credited else None,
                source_site="ft.com" if credited else None,
            )
        )
    if posts:  # a long unbroken link must wrap, not push the page sideways on a phone
        last = buckets[names[(posts - 1) % len(names)]][-1]
        long_url = "https://example.com/a/rather/long/address/that/has/no/spaces/in/it/at/all/2026.html"
        buckets[names[(posts - 1) % len(names)]][-1] = replace(
            last, lead_html=f"{last.lead_html} See {long_url}", lead_text=f"{last.lead_text} See {long_url}"
        )
    sections = tuple(
        Section(name, tuple(sorted(items, key=lambda it: it.date, reverse=True)))
        for name, items in buckets.items()
    )
    return Edition(
        id="2026-W02",
        window_start=start,
        window_end=start + timedelta(days=7),
        categories=(),
        sections=sections,
    )


@dataclass(frozen=True)
class Shot:
    """One screenshot and what the page measured while it was taken."""

    path: Path
    width: int
    scheme: str
    scroll_width: int  # document.documentElement.scrollWidth: > width means sideways scrolling
    body_background: str  # computed background-color of <body>
    card_background: str  # computed background-color of the first content section
    text_color: str  # computed color of the first item's text


_MEASURE = """() => {
  const card = document.querySelector('.c') || document.body;
  const text = document.querySelector('.it div') || document.body;
  return {
    scrollWidth: document.documentElement.scrollWidth,
    body: getComputedStyle(document.body).backgroundColor,
    card: getComputedStyle(card).backgroundColor,
    text: getComputedStyle(text).color,
  };
}"""


def take_screenshots(html: str, out: Path, *, fold: bool = False) -> list[Shot]:
    """Open ``html`` at each width and colour scheme; write PNGs into ``out``; no network used."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    shots: list[Shot] = []
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            for scheme in SCHEMES:
                for width in WIDTHS:
                    page = browser.new_page(viewport={"width": width, "height": 800}, color_scheme=scheme)
                    # An email may not fetch anything before it is opened; nor does the test.
                    page.route(
                        "**/*",
                        lambda route: (
                            route.abort() if route.request.url.startswith("http") else route.continue_()
                        ),
                    )
                    page.set_content(html, wait_until="load")
                    measured = page.evaluate(_MEASURE)
                    path = out / f"{scheme}-{width}.png"
                    page.screenshot(path=str(path), full_page=True)
                    if fold and width == min(WIDTHS):  # what a phone shows before any scrolling
                        page.set_viewport_size({"width": width, "height": PHONE_FOLD})
                        page.screenshot(path=str(out / f"{scheme}-{width}-fold.png"))
                    page.close()
                    shots.append(
                        Shot(
                            path=path,
                            width=width,
                            scheme=scheme,
                            scroll_width=int(measured["scrollWidth"]),
                            body_background=measured["body"],
                            card_background=measured["card"],
                            text_color=measured["text"],
                        )
                    )
        finally:
            browser.close()
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--html", type=Path, help="an HTML file to shoot (default: render a sample edition)")
    parser.add_argument("--out", type=Path, default=Path("build/screenshots"), help="folder for the PNGs")
    parser.add_argument("--posts", type=int, default=10, help="posts in the sample edition")
    args = parser.parse_args(argv)
    if args.html:
        html = args.html.read_text(encoding="utf-8")
    else:
        rendered = Renderer(sample_config()).render(sample_edition(args.posts))
        html = rendered.html
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "sample.html").write_text(html, encoding="utf-8")
        print(f"sample edition: {args.posts} posts, {rendered.html_bytes:,} bytes of HTML")
    for shot in take_screenshots(html, args.out):
        print(
            f"{shot.path}  scrollWidth={shot.scroll_width}  body={shot.body_background}  "
            f"card={shot.card_background}  text={shot.text_color}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
