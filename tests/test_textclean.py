"""digest.textclean: characters email cannot carry, category caps, header text (issue 15)."""

from __future__ import annotations

import logging
from email import message_from_bytes
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import default

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.textclean import MAX_CATEGORIES, Notice, cap_categories, clean_post_text, header_text

BAD = [
    "\x00",
    "\x01",
    "\x07",
    "\x0b",
    "\x0c",
    "\x1b",
    "\x1f",
    "\x7f",
    "\x85",
    "\x9b",
    "\ufffe",
    "\uffff",
    "\ufdd0",
]


def _post(title: str = "A title", body: str = "The lead.") -> str:
    return f'---\ntitle: "{title}"\ncategories: [US]\ndate: 2026-01-07\n---\n\n{body}\n'


def test_clean_text_is_returned_unchanged_without_notices() -> None:
    notices: list[Notice] = []
    text = _post("Café — “quotes” 日本 😀", "Body with\ttabs and émoji 👍🏽 and NBSP\u00a0here.")
    assert clean_post_text(text, notices) is text
    assert notices == []


@pytest.mark.parametrize("char", BAD)
def test_bad_character_in_title_is_named_and_removed(char: str) -> None:
    notices: list[Notice] = []
    cleaned = clean_post_text(_post(f"Bad{char}title"), notices)
    assert char not in cleaned
    assert len(notices) == 1
    level, message = notices[0]
    assert level == logging.WARNING
    assert message.startswith("title: 1 character that cannot appear in email")
    assert f"U+{ord(char):04X}" in message


@pytest.mark.parametrize("char", BAD)
def test_bad_character_in_body_is_named_body(char: str) -> None:
    notices: list[Notice] = []
    cleaned = clean_post_text(_post(body=f"Lead{char}text."), notices)
    assert char not in cleaned
    assert [m.split(":")[0] for _, m in notices] == ["body"]


def test_line_breaking_controls_become_spaces_in_front_matter_and_newlines_in_body() -> None:
    notices: list[Notice] = []
    cleaned = clean_post_text(_post("One\x0bTwo\x0cThree", "Para\x0bline\x0cpage"), notices)
    assert 'title: "One Two Three"' in cleaned
    assert cleaned.endswith("Para\nline\npage\n")
    assert "each replaced by a space" in notices[0][1]
    assert "each replaced by a line break" in notices[1][1]


def test_lone_surrogate_and_astral_noncharacter_are_removed() -> None:
    notices: list[Notice] = []
    cleaned = clean_post_text(_post(body="a\ud800b\U0001fffec\U0010ffff"), notices)
    assert cleaned.endswith("abc\n")
    assert "U+D800" in notices[0][1] and "U+1FFFE" in notices[0][1] and "U+10FFFF" in notices[0][1]


def test_the_field_is_the_key_the_line_belongs_to() -> None:
    notices: list[Notice] = []
    text = "---\ntitle: fine\nexcerpt: >\n  folded\x1b text\n  more\n---\nbody\n"
    clean_post_text(text, notices)
    assert notices[0][1].startswith("excerpt:")


def test_category_list_is_capped_with_a_warning() -> None:
    notices: list[Notice] = []
    many = tuple(f"C{i}" for i in range(100_000))
    assert cap_categories(many, notices) == many[:MAX_CATEGORIES]
    assert "100,000 categories; only the first 50" in notices[0][1]
    few = ("US", "Europe")
    assert cap_categories(few, notices) is few and len(notices) == 1


@given(st.text())
@settings(max_examples=300, deadline=None)
def test_cleaned_text_never_holds_a_bad_character(text: str) -> None:
    cleaned = clean_post_text(text, [])
    for char in cleaned:
        code = ord(char)
        assert char in "\t\n\r" or not (code < 0x20 or 0x7F <= code <= 0x9F)
        assert not (0xD800 <= code <= 0xDFFF or 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE)
    assert clean_post_text(cleaned, []) == cleaned  # idempotent


# -- headers ----------------------------------------------------------------------------------


def _wire(subject: str, name: str) -> bytes:
    msg = EmailMessage()
    msg["To"] = Address(display_name=header_text(name), addr_spec="reader@example.com")
    msg["Subject"] = header_text(subject)
    return bytes(msg)


@pytest.mark.parametrize(
    "hostile", ["=?utf-8?b?QWRtaW4=?=", "=?UTF-8?Q?Admin?=", "Hi =?iso-8859-1?q?Admin?= there"]
)
def test_encoded_words_from_posts_and_readers_do_not_decode(hostile: str) -> None:
    parsed = message_from_bytes(_wire(hostile, hostile), policy=default)
    assert str(parsed["Subject"]).strip() != "Admin"
    assert "Admin" not in {str(parsed["Subject"]), parsed["To"].addresses[0].display_name}
    assert "?utf-8?" in str(parsed["Subject"]).lower() or "?iso-8859-1?" in str(parsed["Subject"]).lower()


def test_bidi_controls_and_line_breaks_are_removed_from_headers() -> None:
    text = header_text("Pay \u202eevil\u202c now\r\nBcc: all@example.com \u2066x\u2069\u200f")
    assert text == "Pay evil now Bcc: all@example.com x"


@given(st.text())
@settings(max_examples=300, deadline=None)
def test_header_text_is_one_plain_line(value: str) -> None:
    text = header_text(value)
    assert "=?" not in text
    assert not any(
        c in text
        for c in "\r\n\x0b\x0c\x85\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    )
    assert text == text.strip()
    assert header_text(text) == text
    msg = EmailMessage()
    msg["Subject"] = text  # the email package accepts it as one header
    assert b"\nBcc:" not in bytes(msg)
