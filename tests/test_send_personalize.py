"""Personalizations built in bulk, in this process or in the worker process."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from fake_sendgrid import FakeSendGrid, validate_mail
from send_fixtures import *  # noqa: F403  (fixtures)
from send_fixtures import AS_OF, SendSite

from digest import weekly
from digest.errors import SendError
from digest.links import LinkMaker, Signer
from digest.model import PREFERENCES_URL, UNSUBSCRIBE_URL
from digest.send import delivery, dispatch
from digest.send.personalize import PersonalizationPool, PersonalizationSpec, Personalizer

SPEC = PersonalizationSpec(
    base_url="https://brief.example.com",
    secret="a-test-secret-that-is-long-enough",
    mailto="mailto:leave@example.com?subject=unsubscribe",  # as digest.send.headers.unsubscribe_mailto gives it
    shared_args=(("edition", "2026-W02"),),
)
MEMBERS = [(i, f"reader{i}@example.org", f"Reader, {i}" if i % 2 else "") for i in range(1, 40)]


def test_personalizations_are_valid_json_with_signed_links() -> None:
    text = Personalizer(SPEC).build(MEMBERS)
    parsed = json.loads(f"[{text}]")
    links = LinkMaker(SPEC.base_url, Signer(SPEC.secret))
    assert len(parsed) == len(MEMBERS)
    for (sid, email, _), p in zip(MEMBERS, parsed, strict=True):
        assert p["to"][0]["email"] == email
        assert p["custom_args"] == {"edition": "2026-W02", "subscriber_id": str(sid)}
        unsubscribe = p["substitutions"][UNSUBSCRIBE_URL]
        token = unsubscribe.rsplit("/", 1)[1]  # a reader token: the id, bound to the address
        assert links.signer.reader_id(token) == sid
        assert links.signer.verify_reader("unsubscribe", token, email) == email
        assert p["substitutions"][PREFERENCES_URL].startswith("https://brief.example.com/preferences/")
        assert (
            p["headers"]["List-Unsubscribe"]
            == f"<{unsubscribe}>, <mailto:leave@example.com?subject=unsubscribe>"
        )
    assert "," not in parsed[0]["to"][0].get("name", "")  # SendGrid refuses commas in names


def test_an_address_twice_in_a_batch_is_refused() -> None:
    with pytest.raises(SendError, match="twice"):
        Personalizer(SPEC).build([(1, "a@example.org", ""), (2, "A@example.org", "")])


def test_the_one_address_rule_decides_what_is_twice() -> None:
    """``digest.addresses.key``: case is one reader, ß and ss are two (casefold() once merged them)."""
    parts = Personalizer(SPEC).build([(1, "strasse@x.example", ""), (2, "straße@x.example", "")])
    assert [p["to"][0]["email"] for p in json.loads(f"[{parts}]")] == [
        "strasse@x.example",
        "straße@x.example",
    ]
    with pytest.raises(SendError, match=r"^STRASSE@x\.example appears twice"):
        Personalizer(SPEC).build([(1, "strasse@x.example", ""), (2, "STRASSE@x.example", "")])


def _unsigned(parts: str) -> str:
    """Personalizations with each signed reader token replaced by what it verifies as."""
    signer = Signer(SPEC.secret)
    emails = {sid: email for sid, email, _ in MEMBERS}

    def verified(match: re.Match[str]) -> str:
        purpose, token = match.group(1), match.group(2)
        sid = signer.reader_id(token)
        assert sid is not None
        return f"/{purpose}/<{signer.verify_reader(purpose, token, emails[sid])}>"

    return re.sub(r"/(preferences|unsubscribe)/([A-Za-z0-9_\-]+)", verified, parts)


def test_the_worker_builds_what_this_process_builds_in_order() -> None:
    pool = PersonalizationPool(SPEC)
    try:
        futures = [pool.submit(MEMBERS[i : i + 7]) for i in range(0, len(MEMBERS), 7)]
        futures.append(pool.submit([(1, "a@example.org", ""), (2, "a@example.org", "")]))
        local = Personalizer(SPEC)
        for i, future in zip(range(0, len(MEMBERS), 7), futures, strict=False):
            # the same readers give the same personalizations, up to the second the links were
            # signed in (a loaded machine can cross one between the worker and this process)
            theirs = _unsigned(future.result(timeout=30))
            assert theirs == _unsigned(local.build(MEMBERS[i : i + 7]))
            assert "/unsubscribe/<reader" in theirs and "/preferences/<reader" in theirs
        with pytest.raises(SendError, match="twice"):
            futures[-1].result(timeout=30)
    finally:
        pool.close()


def test_a_worker_that_died_fails_what_was_asked_of_it() -> None:
    pool = PersonalizationPool(SPEC)
    pool._proc.kill()
    pool._proc.wait()
    future = pool.submit(MEMBERS)
    with pytest.raises(SendError, match="worker stopped"):
        future.result(timeout=30)
    pool.close()


def test_a_send_through_the_worker_reaches_everyone_once(
    fake_sendgrid: FakeSendGrid, send_site: SendSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "POOL_MIN_READERS", 1)
    monkeypatch.setattr(dispatch, "POOL_MIN_BATCH", 1)
    asked: list[int] = []
    submit = PersonalizationPool.submit

    def counting(self, members):  # type: ignore[no-untyped-def]
        asked.append(len(members))
        return submit(self, members)

    monkeypatch.setattr(PersonalizationPool, "submit", counting)
    emails = send_site.add_many(120)
    from datetime import datetime

    summary = weekly.send(
        send_site.config, send_site.store, as_of=datetime.fromisoformat(AS_OF), sender_name="sendgrid"
    )
    assert summary.sent == 120 and summary.ok
    assert sum(asked) == 120  # every reader's part came from the worker
    assert fake_sendgrid.delivered() == Counter({e: 1 for e in emails})
    for accepted in fake_sendgrid.accepted:
        assert validate_mail(accepted.body) == []
