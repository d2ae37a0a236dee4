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
from typing import Any

from digest.browser import launch_chromium
from digest.config import Config, config_from_dict
from digest.model import Edition, Item, PostImage, Section
from digest.render import Renderer

WIDTHS = (375, 600)
PHONE_FOLD = 667  # an iPhone SE / 8 screen: 375 x 667 CSS pixels
DOCS_HEIGHT = 3200  # reviewed artefacts show the top of an edition: masthead, contents, sections
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

# Narrow no-break spaces (U+202F) and a spaced ellipsis, as real wire copy has them: the
# email must neither squash "Donald Trump’s" nor leave "…" alone on a line.
_LEAD = (
    "Former President Donald\u202fTrump’s surprise private meeting with Colombian President Gustavo "
    "Petro on 5\u202fJune marks an unprecedented, media-driven reset in a relationship that has "
    "traditionally been managed through formal, congressional-backed channels. The four-hour dialogue "
    "ended with a pledge to keep security cooperation and revive <em>drug-interdiction</em> flights, "
    'and <a href="https://example.com/background">a background note</a> explains the history. …'
)
# Post pictures in the samples: served by the screenshot's browser from this SVG (no network).
PHOTO_HOST = "images.example.com"
SAMPLE_PHOTO = (
    "<svg xmlns='http://www.w3.org/2000/svg' width='1200' height='675' viewBox='0 0 1200 675'>"
    "<defs><linearGradient id='g' x1='0' y1='0' x2='1' y2='1'><stop offset='0' stop-color='#f6b26b'/>"
    "<stop offset='1' stop-color='#6d9eeb'/></linearGradient></defs><rect width='1200' height='675' "
    "fill='url(#g)'/><circle cx='900' cy='200' r='90' fill='#fff3c4'/><path d='M0 520 L300 330 L520 470 "
    "L760 300 L1200 560 L1200 675 L0 675Z' fill='#3d5a80'/></svg>"
)


def sample_config() -> Config:
    return config_from_dict(
        {"site": {"name": "The Weekly Digest", "logo_url": SAMPLE_LOGO, "timezone": "Europe/London"}},
        root=Path.cwd(),
    )


def sample_edition(posts: int = 10, *, images: int = 0) -> Edition:
    """A realistic edition with ``posts`` items over four categories, some with a source credit.

    Every ``images``-th post (0: none) has a picture, as front matter ``image`` gives one.
    """
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
                image=(
                    PostImage(f"https://{PHOTO_HOST}/{slug}.jpg", f"A picture for {title}", 1200, 675)
                    if images and i % images == 0
                    else None
                ),
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
    chars_per_line: float  # the lead's measure: its width over the mean width of its characters
    top_headlines_bottom: float  # where the edition's first three headlines end (CSS px from top)
    headlines_underlined: bool  # every item headline is underlined, as a link is
    headline_color: str  # computed color of the first item headline


_MEASURE = r"""() => {
  const card = document.querySelector('.c') || document.body;
  const text = document.querySelector('.it div') || document.body;
  const lead = document.querySelector('.l');
  let cpl = 0;
  if (lead) {
    const ctx = document.createElement('canvas').getContext('2d');
    const cs = getComputedStyle(lead);
    ctx.font = cs.fontSize + ' ' + cs.fontFamily;
    const t = lead.innerText.replace(/\s+/g, ' ');
    cpl = lead.clientWidth / (ctx.measureText(t).width / t.length);
  }
  const toc = [...document.querySelectorAll('.t li a')];
  const heads = (toc.length ? toc : [...document.querySelectorAll('h3 a')]).slice(0, 3);
  const h3 = [...document.querySelectorAll('h3 a')];
  return {
    cpl: cpl,
    headsBottom: Math.max(...heads.map(a => a.getBoundingClientRect().bottom)),
    underlined: h3.length > 0 && h3.every(a => getComputedStyle(a).textDecorationLine.includes('underline')),
    headColor: h3.length ? getComputedStyle(h3[0]).color : '',
    scrollWidth: document.documentElement.scrollWidth,
    body: getComputedStyle(document.body).backgroundColor,
    card: getComputedStyle(card).backgroundColor,
    text: getComputedStyle(text).color,
  };
}"""


def _offline(route: Any) -> None:
    """No network: the sample's post pictures come from SAMPLE_PHOTO, anything else fails."""
    url = route.request.url
    if url.startswith(f"https://{PHOTO_HOST}/"):
        route.fulfill(body=SAMPLE_PHOTO, content_type="image/svg+xml")
    elif url.startswith("http"):
        route.abort()
    else:
        route.continue_()


def take_screenshots(html: str, out: Path, *, fold: bool = False, jpeg: bool = False) -> list[Shot]:
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
                    page.route("**/*", _offline)
                    page.set_content(html, wait_until="load")
                    measured = page.evaluate(_MEASURE)
                    path = out / f"{scheme}-{width}.{'jpg' if jpeg else 'png'}"
                    if jpeg:  # reviewed artefacts in the repo: kept small (the top, as JPEG)
                        height = min(page.evaluate("document.documentElement.scrollHeight"), DOCS_HEIGHT)
                        clip = {"x": 0, "y": 0, "width": width, "height": height}
                        page.screenshot(path=str(path), full_page=True, clip=clip, type="jpeg", quality=45)
                    else:
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
                            chars_per_line=float(measured["cpl"]),
                            top_headlines_bottom=float(measured["headsBottom"]),
                            headlines_underlined=bool(measured["underlined"]),
                            headline_color=measured["headColor"],
                        )
                    )
        finally:
            browser.close()
    return shots


# The reviewed sets in docs/screenshots/ (python scripts/screenshot.py --docs).
DOCS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


def reviewed_sets() -> dict[str, tuple[str, int]]:
    """name -> (HTML, bytes) for each edition the design was judged on."""
    renderer = Renderer(sample_config())
    sets = {
        "sample": sample_posts_html(),
        "images": renderer.render(sample_edition(10, images=1)),
        "twenty": renderer.render(sample_edition(20, images=3)),
        "single": renderer.render(sample_edition(1, images=1)),
    }
    return {name: (r.html, r.html_bytes) for name, r in sets.items()}


def sample_posts_html() -> Any:
    """The README's sample: posts/ and config.toml (with editions/2026-W02.md) for all categories."""
    from digest import pipeline
    from digest.config import load_config

    root = Path(__file__).resolve().parent.parent
    config = load_config(root / "config.toml")
    edition = pipeline.build_edition(
        config, as_of=datetime(2026, 1, 9, tzinfo=config.tz), posts=pipeline.load(config, use_cache=False)
    )
    return Renderer(config).render(edition)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--html", type=Path, help="an HTML file to shoot (default: render a sample edition)")
    parser.add_argument("--out", type=Path, default=Path("build/screenshots"), help="folder for the PNGs")
    parser.add_argument("--posts", type=int, default=10, help="posts in the sample edition")
    parser.add_argument("--images", type=int, default=0, help="every Nth sample post has a picture (0: none)")
    parser.add_argument(
        "--docs",
        action="store_true",
        help=f"shoot the reviewed sets (sample, images, twenty, single) into {DOCS} (JPEG pages, PNG folds)",
    )
    args = parser.parse_args(argv)
    if args.docs:
        for name, (html, size) in reviewed_sets().items():
            folder = DOCS / name
            shots = take_screenshots(html, folder, fold=True, jpeg=True)
            widest = max(shot.scroll_width - shot.width for shot in shots)
            measure = {shot.width: round(shot.chars_per_line) for shot in shots}
            fold = max(s.top_headlines_bottom for s in shots if s.width == min(WIDTHS))
            print(
                f"{name:7} {size:>7,} bytes of HTML  overflow {widest}px  measure {measure} chars  "
                f"top 3 headlines end at {fold:.0f}px (fold {PHONE_FOLD})  -> {folder}"
            )
        return 0
    if args.html:
        html = args.html.read_text(encoding="utf-8")
    else:
        rendered = Renderer(sample_config()).render(sample_edition(args.posts, images=args.images))
        html = rendered.html
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "sample.html").write_text(html, encoding="utf-8")
        print(f"sample edition: {args.posts} posts, {rendered.html_bytes:,} bytes of HTML")
    for shot in take_screenshots(html, args.out, fold=True):
        print(
            f"{shot.path}  scrollWidth={shot.scroll_width}  body={shot.body_background}  "
            f"card={shot.card_background}  text={shot.text_color}  "
            f"measure={shot.chars_per_line:.0f} chars  top 3 headlines end at {shot.top_headlines_bottom:.0f}px"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
