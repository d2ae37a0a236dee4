"""Signed links: round trip, tampering, wrong purpose, expiry, secret handling."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from digest.config import config_from_dict
from digest.errors import ConfigError, LinkError
from digest.links import CONFIRM, PREFERENCES, UNSUBSCRIBE, LinkMaker, Signer, _unvarint, _varint, load_secret

SECRET = "s" * 40


def test_round_trip_returns_the_address():
    signer = Signer(SECRET)
    token = signer.sign(PREFERENCES, "Reader@example.com")
    assert signer.verify(PREFERENCES, token) == "Reader@example.com"


def test_a_changed_token_is_refused():
    signer = Signer(SECRET)
    token = signer.sign(UNSUBSCRIBE, "a@example.com")
    forged = Signer("t" * 40).sign(UNSUBSCRIBE, "victim@example.com")
    payload_of_forged = forged.split(".")[0]
    with pytest.raises(LinkError, match="not valid"):
        signer.verify(UNSUBSCRIBE, payload_of_forged + "." + token.split(".")[1])
    with pytest.raises(LinkError, match="not valid"):
        signer.verify(UNSUBSCRIBE, forged)


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "!!!.???", "YWJj.", ".YWJj"])
def test_damaged_tokens_get_a_clear_error(token):
    with pytest.raises(LinkError):
        Signer(SECRET).verify(CONFIRM, token)


def test_a_token_for_one_purpose_does_not_work_for_another():
    signer = Signer(SECRET)
    token = signer.sign(PREFERENCES, "a@example.com")
    with pytest.raises(LinkError):
        signer.verify(CONFIRM, token)
    with pytest.raises(LinkError):
        signer.verify("nonsense", token)


def test_expiry():
    signer = Signer(SECRET)
    token = signer.sign(CONFIRM, "a@example.com", issued_at=1_000)
    assert signer.verify(CONFIRM, token, max_age=60, now=1_059) == "a@example.com"
    with pytest.raises(LinkError, match="expired"):
        signer.verify(CONFIRM, token, max_age=60, now=1_061)


def test_short_secret_is_refused_with_how_to_make_one():
    with pytest.raises(ConfigError, match="token_urlsafe"):
        Signer("short")


def test_secret_from_environment_or_a_private_file(tmp_path, monkeypatch):
    config = config_from_dict({}, root=tmp_path)
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    assert load_secret(config) == SECRET
    monkeypatch.delenv("DIGEST_SECRET")
    first = load_secret(config)
    assert first == load_secret(config)  # kept, so links stay valid across runs
    assert (tmp_path / ".digest-secret").stat().st_mode & 0o077 == 0


def test_link_maker_builds_urls_on_the_web_base(tmp_path):
    maker = LinkMaker("https://news.example.com/", Signer(SECRET))
    url = maker.unsubscribe_url("a+b@example.com")
    assert url.startswith("https://news.example.com/unsubscribe/")
    token = url.rsplit("/", 1)[1]
    assert Signer(SECRET).verify(UNSUBSCRIBE, token) == "a+b@example.com"
    assert "/preferences/" in maker.preferences_url("a@example.com")
    assert "/confirm/" in maker.confirm_url("a@example.com")


def test_personal_urls_are_the_two_links_of_a_send():
    maker = LinkMaker("https://news.example.com", Signer(SECRET))
    for email in ("a+b@example.com", "Ünï@exämple.com", "o'neil@example.com"):
        preferences, unsubscribe = maker.personal_urls(email)
        assert preferences == maker.preferences_url(email)
        assert unsubscribe == maker.unsubscribe_url(email)
        assert Signer(SECRET).verify(PREFERENCES, preferences.rsplit("/", 1)[1]) == email
        assert Signer(SECRET).verify(UNSUBSCRIBE, unsubscribe.rsplit("/", 1)[1]) == email
    tokens = Signer(SECRET).sign_many((PREFERENCES, UNSUBSCRIBE), "a@example.com", issued_at=5)
    assert tokens == [
        Signer(SECRET).sign(p, "a@example.com", issued_at=5) for p in (PREFERENCES, UNSUBSCRIBE)
    ]


# -- reader tokens: the subscriber id, no address (issue 12: bytes per reader) ----------------


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_varint_round_trips(n: int) -> None:
    assert _unvarint(_varint(n)) == n


@given(
    st.integers(min_value=1, max_value=50_000_000),
    st.emails(),
    st.integers(min_value=0, max_value=2**32 - 1),
)
def test_reader_tokens_round_trip_and_carry_no_address(sid: int, email: str, issued: int) -> None:
    signer = Signer(SECRET)
    token = signer.sign_reader(UNSUBSCRIBE, sid, email, issued_at=issued)
    assert "." not in token and len(token) <= 28  # told apart from address tokens; short
    assert signer.reader_id(token) == sid
    assert signer.verify_reader(UNSUBSCRIBE, token, email) == email
    assert signer.verify_reader(UNSUBSCRIBE, token, email.upper()) == email.upper()  # one key rule
    import base64

    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert len(raw) == len(_varint(sid)) + 4 + 12  # the id, the time, the MAC: nothing of the address


def test_a_reader_token_is_bound_to_the_address_purpose_and_secret() -> None:
    signer = Signer(SECRET)
    token = signer.sign_reader(PREFERENCES, 42, "ana@example.com")
    with pytest.raises(LinkError, match="not valid"):
        signer.verify_reader(PREFERENCES, token, "someone.else@example.com")  # id given to another
    with pytest.raises(LinkError, match="not valid"):
        signer.verify_reader(PREFERENCES, token, "straße@example.com".replace("ß", "ss"))
    with pytest.raises(LinkError, match="not valid"):
        signer.verify_reader(UNSUBSCRIBE, token, "ana@example.com")  # another purpose
    with pytest.raises(LinkError, match="not valid"):
        signer.verify_reader(PREFERENCES, token, None)  # no such reader: reads as a forgery
    with pytest.raises(LinkError, match="not valid"):
        Signer("t" * 40).verify_reader(PREFERENCES, token, "ana@example.com")
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(LinkError):
        signer.verify_reader(PREFERENCES, flipped, "ana@example.com")
    old = signer.sign_reader(PREFERENCES, 42, "ana@example.com", issued_at=1_000)
    with pytest.raises(LinkError, match="expired"):
        signer.verify_reader(PREFERENCES, old, "ana@example.com", max_age=60, now=2_000)


@pytest.mark.parametrize("token", ["", "A", "AAAA", "____", "!!!!"])
def test_damaged_reader_tokens_get_a_clear_error(token: str) -> None:
    with pytest.raises(LinkError, match="damaged"):
        Signer(SECRET).reader_id(token)


def test_links_sent_before_reader_tokens_keep_working() -> None:
    """Address tokens (the old format, still in inboxes) are told apart and still verify."""
    signer = Signer(SECRET)
    old = signer.sign(UNSUBSCRIBE, "ana@example.com")
    assert signer.reader_id(old) is None
    assert signer.verify(UNSUBSCRIBE, old) == "ana@example.com"
    links = LinkMaker("https://b.example", signer)
    pref, unsub = links.personal_urls("ana@example.com", 7)
    assert links.personal_urls_many([(7, "ana@example.com")]) == [(pref, unsub)]
    assert signer.reader_id(unsub.rsplit("/", 1)[1]) == 7
    assert signer.reader_id(links.personal_urls("ana@example.com")[1].rsplit("/", 1)[1]) is None
