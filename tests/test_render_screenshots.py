"""The email in a real browser: no sideways scrolling on a phone, and dark mode really dark.

Screenshots go to tests/artifacts/screenshots/ (gitignored) for a person to look at; the
assertions catch the regressions a person would notice first. Skipped without Chromium unless
DIGEST_TEST_REQUIRE_BROWSER=1 (scripts/test.sh sets it), which turns the skip into a failure.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from digest.browser import CHROMIUM, chromium_path

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(__file__).parent / "artifacts" / "screenshots"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("digest_screenshot", ROOT / "scripts" / "screenshot.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


def _need_browser() -> None:
    missing = []
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright package")
    if chromium_path() is None:
        missing.append(CHROMIUM)
    if missing:
        message = f"browser tests need {' and '.join(missing)}"
        if os.environ.get("DIGEST_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def shots() -> dict[tuple[str, int], object]:
    script = _load_script()
    _need_browser()
    rendered = script.Renderer(script.sample_config()).render(script.sample_edition(10))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "sample.html").write_text(rendered.html, encoding="utf-8")
    return {(s.scheme, s.width): s for s in script.take_screenshots(rendered.html, ARTIFACTS)}


def _luminance(css_color: str) -> float:
    """Relative luminance (0 black .. 1 white) of a computed 'rgb(...)' / 'rgba(...)' colour."""
    r, g, b = (int(v) / 255 for v in re.findall(r"\d+(?:\.\d+)?", css_color)[:3])

    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def _contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [375, 600])
def test_no_horizontal_overflow(shots: dict, scheme: str, width: int) -> None:
    shot = shots[(scheme, width)]
    assert shot.scroll_width <= width, f"{shot.path}: page is {shot.scroll_width}px wide at {width}px"
    assert shot.path.stat().st_size > 10_000  # a real picture, not a blank page


@pytest.mark.parametrize("width", [375, 600])
def test_dark_mode_is_dark_and_readable(shots: dict, width: int) -> None:
    shot = shots[("dark", width)]
    assert _luminance(shot.body_background) < 0.05, shot.body_background
    assert _luminance(shot.card_background) < 0.05, shot.card_background
    assert _contrast(shot.text_color, shot.card_background) >= 7, (shot.text_color, shot.card_background)


@pytest.mark.parametrize("width", [375, 600])
def test_light_mode_is_light_and_readable(shots: dict, width: int) -> None:
    shot = shots[("light", width)]
    assert _luminance(shot.card_background) > 0.9, shot.card_background
    assert _contrast(shot.text_color, shot.card_background) >= 7, (shot.text_color, shot.card_background)


# -- the design's bar (issue 16) -------------------------------------------------------------------


def test_phone_shows_what_the_edition_is_and_three_headlines_above_the_fold(shots: dict) -> None:
    script = _load_script()
    for scheme in ("light", "dark"):
        shot = shots[(scheme, 375)]
        assert 0 < shot.top_headlines_bottom <= script.PHONE_FOLD, shot.top_headlines_bottom


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_lead_measure_is_a_readable_line(shots: dict, scheme: str) -> None:
    """About 60-75 characters a line at 600 px; a phone is narrower, never wider."""
    assert 58 <= shots[(scheme, 600)].chars_per_line <= 76, shots[(scheme, 600)].chars_per_line
    assert shots[(scheme, 375)].chars_per_line < shots[(scheme, 600)].chars_per_line


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_headlines_look_like_links(shots: dict, scheme: str) -> None:
    shot = shots[(scheme, 600)]
    assert shot.headlines_underlined
    assert shot.headline_color != shot.text_color
    assert _contrast(shot.headline_color, shot.card_background) >= 4.5
