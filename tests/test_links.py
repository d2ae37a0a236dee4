"""Signed links: round trip, tampering, wrong purpose, expiry, secret handling."""

from __future__ import annotations

import pytest

from digest.config import config_from_dict
from digest.errors import ConfigError, LinkError
from digest.links import CONFIRM, PREFERENCES, UNSUBSCRIBE, LinkMaker, Signer, load_secret

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
