"""The one address rule (digest.addresses): normalisation and key, at every door (issues 12 and 15)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest import addresses
from digest import subscribers as subs
from digest.addresses import AddressError
from digest.errors import StoreError


def test_case_is_one_reader_but_eszett_is_not_ss() -> None:
    assert addresses.key_of("ANA@Example.COM") == addresses.key_of("ana@example.com") == "ana@example.com"
    # casefold() would merge these; they are two mailboxes on any SMTPUTF8 server.
    assert addresses.key_of("straße@example.com") != addresses.key_of("strasse@example.com")
    assert addresses.key_of("STRASSE@example.com") == addresses.key_of("strasse@example.com")


def test_nfc_and_idna() -> None:
    nfd = unicodedata.normalize("NFD", "jöhn@BÜCHER.de")
    assert addresses.normalise(nfd) == "jöhn@xn--bcher-kva.de"
    assert addresses.key_of(nfd) == addresses.key_of("JÖHN@bücher.de")
    assert addresses.normalise("  Ana@Example.com ") == "Ana@example.com"  # local part as typed


@pytest.mark.parametrize(
    "raw", ["", "no-at-sign", "a@b", "line@break.com\r\nBcc: x@y.com", "x" * 65 + "@example.com", 5]
)
def test_refusals_say_why(raw: object) -> None:
    with pytest.raises(AddressError) as info:
        addresses.normalise(raw)  # type: ignore[arg-type]
    assert isinstance(info.value, StoreError)
    assert str(info.value)


def test_subscribers_use_the_same_rule() -> None:
    assert subs.normalise_email is not None
    for raw in ("ANA@Example.COM", "straße@example.com", unicodedata.normalize("NFD", "jöhn@example.com")):
        assert subs.email_key(subs.normalise_email(raw)) == addresses.key_of(raw)


def test_eszett_pair_are_two_readers(store, config_with_categories) -> None:  # type: ignore[no-untyped-def]
    config = config_with_categories
    subs.subscribe(store, config, "strasse@example.com", ["News"], confirmed=True)
    subs.subscribe(store, config, "straße@example.com", ["Tech"], confirmed=True)
    subs.subscribe(store, config, "STRASSE@example.com", ["News"], confirmed=True)  # same as the first
    rows = {s.email: s.categories for s in subs.iter_subscribers(store, statuses=None)}
    assert rows == {"strasse@example.com": ("news",), "straße@example.com": ("tech",)}


@pytest.fixture
def config_with_categories(make_config):  # type: ignore[no-untyped-def]
    return make_config()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.emails(), st.text(max_size=80), st.from_regex(r"[^@\s]{1,20}@[a-zA-Zß-ÿ.]{1,20}", fullmatch=True)
    )
)
def test_normalise_is_idempotent_and_only_raises_address_errors(raw: str) -> None:
    try:
        once = addresses.normalise(raw)
    except AddressError:
        return
    assert addresses.normalise(once) == once
    assert (
        addresses.key(once)
        == addresses.key_of(raw)
        == addresses.key(addresses.normalise(addresses.key(once)))
    )
    assert "\n" not in once and "\r" not in once
    assert len(once) <= addresses.EMAIL_MAX
