"""Hostile CSV files and config values (issue 15): every bad item named, nothing else lost."""

from __future__ import annotations

import csv
import io
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest import subscribers as subs
from digest.config import Config, config_from_dict
from digest.errors import ConfigError
from digest.store import Store, open_store
from digest.subscribers.csvio import FORMULA_START, guard, unguard

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# --- the spreadsheet guard -------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(["'", "=", "+", "-", "@", "\t", "\r", "\n", "a", " ", "é"]), max_size=8)
    | st.text()
)
def test_guard_round_trips_and_never_leaves_a_formula(text: str) -> None:
    guarded = guard(text)
    assert unguard(guarded) == text
    assert not guarded.startswith(FORMULA_START)


def _memory_store(config: Config) -> Store:
    return open_store(config, url="sqlite://")


def test_export_guards_every_column_and_reads_back(make_config: Any, tmp_path: Path) -> None:
    config = make_config(categories=[{"name": "-Minus"}, {"name": "News"}])
    store = _memory_store(config)
    hostile = "=cmd|'/Ccalc'!A0@example.com"
    subs.subscribe(store, config, hostile, ["-Minus"], name="@SUM(1+1)", confirmed=True)
    subs.subscribe(store, config, "+1@example.com", ["News"], name="'=already quoted", confirmed=True)
    out = io.StringIO()
    assert subs.export_csv(store, out) == 2
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    for row in rows[1:]:
        for cell in row:
            assert not cell.startswith(FORMULA_START), row
    assert rows[1][:3] == ["'" + hostile, "'@SUM(1+1)", "'-minus"]
    assert rows[2][:2] == ["'+1@example.com", "''=already quoted"]
    # Exported and imported into a fresh database: the same readers, byte for byte.
    path = tmp_path / "export.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    other = _memory_store(config)
    report = subs.import_csv(other, config, path)
    assert report.ok and report.created == 2, report.problems
    again = {(s.email, s.name, s.categories) for s in subs.iter_subscribers(other, statuses=None)}
    assert again == {
        (hostile, "@SUM(1+1)", ("-minus",)),
        ("+1@example.com", "'=already quoted", ("news",)),
    }


def test_unterminated_quote_costs_one_row_with_its_line(make_config: Any, tmp_path: Path) -> None:
    config = make_config()
    store = _memory_store(config)
    path = tmp_path / "broken.csv"
    path.write_text(
        "email,name,categories\n"
        "a@example.com,Ana,News\n"
        '"b@example.com,Bob,News\n'  # line 3: the quote is never closed
        + "".join(f"r{i}@example.com,R{i},News\n" for i in range(4, 10))  # lines 4-9
        + 'z@example.com,"Zed",News\n'  # line 10: a closing quote for line 3's, further down
        + '"multi@example.com","Two\nLines",Tech\n',  # lines 11-12: a real two-line cell
        encoding="utf-8",
    )
    report = subs.import_csv(store, config, path)
    assert [p.line for p in report.problems] == [3]
    assert "quote" in report.problems[0].message
    assert report.created == 9
    assert subs.get(store, "multi@example.com").name == "Two Lines"  # type: ignore[union-attr]
    assert subs.get(store, "b@example.com") is None


ROW_EMAILS = st.from_regex(r"[a-z]{1,8}[0-9]{0,3}@example\.(com|org)", fullmatch=True)
HOSTILE_LINE = st.text(
    alphabet=st.sampled_from([*string.printable.replace("\n", "").replace("\r", ""), '"', "é", "\x00"]),
    max_size=60,
)


@FAST
@given(
    emails=st.lists(ROW_EMAILS, min_size=1, max_size=8, unique=True),
    names=st.lists(st.text(max_size=30), min_size=8, max_size=8),
    hostile=HOSTILE_LINE,
    at=st.integers(min_value=0, max_value=8),
)
def test_one_hostile_line_never_costs_another_row(
    make_config: Any, tmp_path: Path, emails: list[str], names: list[str], hostile: str, at: int
) -> None:
    config = make_config()
    store = _memory_store(config)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for email, name in zip(emails, names, strict=False):
        writer.writerow([email, guard(" ".join(name.split())), "News"])
    lines = out.getvalue().splitlines(keepends=True)
    at = min(at, len(lines))
    lines.insert(at, hostile + "\n")
    path = tmp_path / "fuzz.csv"
    path.write_text("email,name,categories\n" + "".join(lines), encoding="utf-8")
    report = subs.import_csv(store, config, path)
    hostile_line = at + 2
    assert all(p.line == hostile_line for p in report.problems), (report.problems, hostile_line)
    have = {s.email for s in subs.iter_subscribers(store, statuses=None)}
    assert set(emails) <= have  # every good row got in, whatever the line beside it
    store.dispose()


# --- config values that would break a header ---------------------------------------------------

HEADER_KEYS = [
    ("site", "name"),
    ("sender", "from_name"),
    ("sender", "reply_to"),
    ("sender", "unsubscribe_mailto"),
    ("sender", "from_email"),
    ("sender", "sending_domain"),
]


@pytest.mark.parametrize(("section", "key"), HEADER_KEYS)
@pytest.mark.parametrize("bad", ["\r\nBcc: victim@example.org", "\n", "\x00", "\u2028", "\x1b[31m", "\u202e"])
def test_header_breaking_values_are_refused_with_the_key(section: str, key: str, bad: str) -> None:
    value = "news@example.com" if key in ("reply_to", "unsubscribe_mailto", "from_email") else "Value"
    with pytest.raises(ConfigError, match=rf"{section}\.{key}"):
        config_from_dict({section: {key: value + bad}}, root=Path("."))


def test_multiline_keys_keep_their_lines() -> None:
    # The subject template may run over lines (the renderer folds it); other controls are refused.
    assert config_from_dict({"edition": {"subject": "{{ site.name }}\n  x"}}, root=Path(".")).edition.subject
    with pytest.raises(ConfigError, match=r"edition\.subject contains the control character U\+0000"):
        config_from_dict({"edition": {"subject": "A\x00B"}}, root=Path("."))
    config = config_from_dict({"site": {"postal_address": "1 High St\nLondon"}}, root=Path("."))
    assert config.site.postal_address == "1 High St\nLondon"
    with pytest.raises(ConfigError, match=r"categories\[1\]\.name"):
        config_from_dict({"categories": [{"name": "News\r\nX-Evil: 1"}]}, root=Path("."))
    with pytest.raises(ConfigError, match=r"sender\.reply_to .* not one email address"):
        config_from_dict({"sender": {"reply_to": "two@example.com, three@example.com"}}, root=Path("."))


@settings(max_examples=150, deadline=None)
@given(
    section_key=st.sampled_from([*HEADER_KEYS, ("site", "postal_address"), ("web", "base_url")]),
    value=st.text(max_size=40),
)
def test_any_config_value_loads_or_names_its_key(section_key: tuple[str, str], value: str) -> None:
    section, key = section_key
    try:
        config = config_from_dict({section: {key: value}}, root=Path("."))
    except ConfigError as exc:
        assert f"{section}.{key}" in str(exc)
        return
    loaded = getattr(getattr(config, section), key)
    if (section, key) != ("site", "postal_address"):
        assert not any(ch in loaded for ch in "\r\n\x00")
