"""The web app against what a hostile client can send (issue 15): one path for every address,
4xx never 500, odd webhook events skipped and logged while the batch is accepted.

Fuzzed with Hypothesis over form fields, tokens and webhook bodies, kept to a few dozen
examples each so the suite stays fast; the concrete cases from the issue are tests of their own.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient
from test_web import _signed as signed  # the Event Webhook's signed headers

from digest import subscribers as subs
from digest.config import Config
from digest.links import CONFIRM, PREFERENCES, UNSUBSCRIBE, Signer
from digest.send.base import OutgoingMessage
from digest.store import open_store
from digest.web import create_app
from digest.web.app import WebApp

SECRET = "hostile-web-secret-0123456789-abcdefghijklmn"
BASE = "http://testserver"
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Sender:
    name = "recording"

    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []

    def send_one(self, message: OutgoingMessage) -> str:
        self.sent.append(message)
        return f"id-{len(self.sent)}"

    def send_batch(self, batch: Any) -> Any:  # pragma: no cover - the web app never batches
        raise NotImplementedError

    def close(self) -> None:
        pass


@pytest.fixture
def site(make_config: Callable[..., Config], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)
    private = ec.generate_private_key(ec.SECP256R1())
    public_b64 = base64.b64encode(
        private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    config = make_config(
        web={"base_url": BASE, "subscribe_per_hour": 100_000, "sendgrid_webhook_public_key": public_b64},
        database={"url": "sqlite:///hostile.db"},
    )
    store = open_store(config)
    sender = Sender()
    try:
        with TestClient(create_app(config, store=store, sender=sender), base_url=BASE) as client:
            yield {"client": client, "store": store, "config": config, "private": private, "sender": sender}
    finally:
        store.dispose()


def web_of(client: TestClient) -> WebApp:
    return client.app.state.web  # type: ignore[attr-defined,no-any-return]


def token_of(client: TestClient) -> str:
    page = client.get("/").text
    return page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


# --- one path for every address ----------------------------------------------------------------


def test_subscribe_answers_alike_before_any_lookup_or_write(site: dict[str, Any]) -> None:
    client, store, config = site["client"], site["store"], site["config"]
    subs.subscribe(store, config, "active@example.com", ["News"], confirmed=True)
    subs.subscribe(store, config, "bounced@example.com", ["News"], confirmed=True)
    subs.set_status(store, "bounced@example.com", "bounced", source="test")
    token = token_of(client)
    answers = {}
    web = web_of(client)
    calls: list[str] = []
    real = web._subscribe_and_mail

    def spy(email: str, names: list[str], name: str) -> None:
        calls.append(email)
        real(email, names, name)

    web._subscribe_and_mail = spy  # type: ignore[method-assign]
    for email in ("new@example.com", "active@example.com", "bounced@example.com"):
        response = client.post("/subscribe", data={"email": email, "category": "News", "csrf_token": token})
        answers[email] = (
            response.status_code,
            response.text.replace(email, "EMAIL"),
            tuple(sorted(response.headers)),
        )
    web.jobs.join()
    assert len(set(answers.values())) == 1, "the answers differ by the address's state"
    assert calls == ["new@example.com", "active@example.com", "bounced@example.com"]  # every one queued
    assert subs.get(store, "new@example.com").status == "pending"  # type: ignore[union-attr]
    assert subs.get(store, "bounced@example.com").status == "bounced"  # type: ignore[union-attr]
    kinds = sorted(m.categories[0] for m in site["sender"].sent)
    assert kinds == ["digest-already", "digest-confirm"]  # nothing to the bounced address


def test_subscribe_work_runs_outside_the_request(site: dict[str, Any]) -> None:
    """The job thread, not the request, does the look-up: the answer comes while the job still waits."""
    client = site["client"]
    web = web_of(client)
    release = threading.Event()
    seen: list[bool] = []

    def blocked(email: str, names: list[str], name: str) -> None:
        seen.append(release.wait(timeout=10))

    web._subscribe_and_mail = blocked  # type: ignore[method-assign]
    token = token_of(client)
    response = client.post(
        "/subscribe", data={"email": "slow@example.com", "category": "News", "csrf_token": token}
    )
    assert response.status_code == 200  # answered while the job is still blocked
    assert seen == []
    release.set()
    web.jobs.join()
    assert seen == [True]


# --- signed links for addresses the rules no longer accept ---------------------------------------


@pytest.mark.parametrize(
    ("purpose", "path"), [(CONFIRM, "confirm"), (PREFERENCES, "preferences"), (UNSUBSCRIBE, "unsubscribe")]
)
@pytest.mark.parametrize(
    "address", ["not an address", "a@b", "x" * 300 + "@example.com", "ctl\x00@example.com"]
)
def test_signed_token_for_an_invalid_address_is_a_clear_400(
    site: dict[str, Any], purpose: str, path: str, address: str
) -> None:
    client = site["client"]
    token = Signer(SECRET).sign(purpose, address)
    for response in (
        client.get(f"/{path}/{token}"),
        client.post(f"/{path}/{token}", data={"List-Unsubscribe": "One-Click"}),
    ):
        assert response.status_code in (400, 403), (response.status_code, response.text[:300])
    got = client.get(f"/{path}/{token}")
    assert got.status_code == 400
    assert "can no longer accept" in got.text


# --- the webhook: odd events skipped and logged, the batch accepted ------------------------------


def test_signed_batch_with_odd_events_records_the_rest(
    site: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    client, store, config = site["client"], site["store"], site["config"]
    subs.subscribe(store, config, "bounce@example.com", ["News"], confirmed=True)
    odd: list[Any] = [
        {"event": "bounce", "email": "x@example.com", "timestamp": float("nan"), "sg_event_id": "nan"},
        {"event": "bounce", "email": "x@example.com", "timestamp": 1e300, "sg_event_id": "huge"},
        {"event": "bounce", "email": "x@example.com", "timestamp": -1e20, "sg_event_id": "negative"},
        {"event": "bounce", "email": "x@example.com", "timestamp": "yesterday", "sg_event_id": "text"},
        {"event": "bounce", "email": 42, "sg_event_id": "number-email"},
        {"event": ["bounce"], "email": "x@example.com", "sg_event_id": "list-event"},
        {"event": "bounce", "email": "x@example.com", "sg_event_id": {"nested": True}},
        {"event": "bounce", "email": "y" * 400 + "@example.com", "sg_event_id": "long"},
        "not an object",
        None,
    ]
    good = {
        "event": "bounce",
        "email": "bounce@example.com",
        "timestamp": int(time.time()),
        "sg_event_id": "ok-1",
    }
    body = json.dumps([*odd, good]).encode()  # json writes NaN as NaN, which SendGrid's parser would too
    with caplog.at_level(logging.WARNING, logger="digest.web.provider"):
        response = client.post("/webhooks/sendgrid", content=body, headers=signed(site["private"], body))
    assert response.status_code == 200, response.text
    assert response.json()["skipped"] == len(odd)
    assert response.json()["recorded"] == 1
    assert subs.get(store, "bounce@example.com").status == "bounced"  # type: ignore[union-attr]
    skipped_logs = [r for r in caplog.records if "skipped SendGrid webhook event" in r.getMessage()]
    assert len(skipped_logs) == len(odd)
    assert any("timestamp is nan" in r.getMessage() for r in skipped_logs)


def test_an_event_the_checks_did_not_foresee_fails_alone(
    site: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.send import webhook

    client, store, config = site["client"], site["store"], site["config"]
    subs.subscribe(store, config, "b2@example.com", ["News"], confirmed=True)
    real = webhook.record_events

    def fragile(store: Any, events: list[dict[str, Any]]) -> Any:
        if any(e.get("reason") == "poison" for e in events):
            raise RuntimeError("something nobody foresaw")
        return real(store, events)

    route = next(r for r in client.app.routes if getattr(r, "path", "") == "/webhooks/sendgrid")  # type: ignore[attr-defined]
    route.endpoint.__self__.record = fragile
    events = [
        {"event": "processed", "email": "b2@example.com", "reason": "poison", "sg_event_id": "p"},
        {"event": "bounce", "email": "b2@example.com", "sg_event_id": "b"},
    ]
    body = json.dumps(events).encode()
    response = client.post("/webhooks/sendgrid", content=body, headers=signed(site["private"], body))
    assert response.status_code == 200 and response.json()["skipped"] == 1
    assert subs.get(store, "b2@example.com").status == "bounced"  # type: ignore[union-attr]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
EVENT = st.fixed_dictionaries(
    {},
    optional={
        "event": st.sampled_from(["bounce", "spamreport", "unsubscribe", "delivered", "processed"]) | JSON,
        "email": st.sampled_from(["fz@example.com", "FZ@example.com", "nobody@example.com", ""]) | JSON,
        "timestamp": st.integers() | st.floats() | JSON,
        "sg_event_id": st.text(max_size=30) | JSON,
        "type": JSON,
        "reason": JSON,
    },
)


@FUZZ
@given(events=st.lists(EVENT | JSON, max_size=6))
def test_any_signed_batch_is_2xx_or_4xx(site: dict[str, Any], events: list[Any]) -> None:
    body = json.dumps(events).encode()
    response = site["client"].post("/webhooks/sendgrid", content=body, headers=signed(site["private"], body))
    assert response.status_code == 200, response.text


@FUZZ
@given(body=st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode()))
def test_any_signed_body_is_never_a_500(site: dict[str, Any], body: bytes) -> None:
    response = site["client"].post("/webhooks/sendgrid", content=body, headers=signed(site["private"], body))
    assert response.status_code in (200, 400), response.text


# --- forms and tokens: 4xx, never 500 -----------------------------------------------------------


FIELD = st.text(max_size=60) | st.sampled_from(
    ["a@example.com", "ANA@Example.com", "straße@example.com", "News"]
)


@FUZZ
@given(
    email=FIELD,
    name=FIELD,
    categories=st.lists(FIELD, max_size=3),
    extra=st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=20), max_size=3),
)
def test_any_subscribe_form_is_answered_without_a_500(
    site: dict[str, Any], email: str, name: str, categories: list[str], extra: dict[str, str]
) -> None:
    client = site["client"]
    data: dict[str, Any] = {
        **extra,
        "email": email,
        "name": name,
        "category": categories,
        "csrf_token": token_of(client),
    }
    response = client.post("/subscribe", data=data)
    web_of(client).jobs.join()
    assert response.status_code in (200, 400), response.text[:300]


@FUZZ
@given(
    path=st.sampled_from(["confirm", "preferences", "unsubscribe"]),
    token=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=80)
    | st.sampled_from(["x" * 2000, "a.b.c", "..", "%00"]),
    action=st.text(max_size=12),
)
def test_any_token_and_button_is_answered_without_a_500(
    site: dict[str, Any], path: str, token: str, action: str
) -> None:
    client = site["client"]
    from urllib.parse import quote

    url = f"/{path}/{quote(token, safe='')}"
    assert client.get(url).status_code < 500
    posted = client.post(
        url, data={"action": action, "List-Unsubscribe": "One-Click", "csrf_token": token_of(client)}
    )
    assert posted.status_code < 500, posted.text[:300]


@FUZZ
@given(
    address=st.emails() | st.text(max_size=40),
    action=st.sampled_from(["save", "pause", "resume", "unsubscribe", "?"]),
)
def test_signed_preferences_for_any_address_never_500(
    site: dict[str, Any], address: str, action: str
) -> None:
    client = site["client"]
    token = Signer(SECRET).sign(PREFERENCES, address)
    assert client.get(f"/preferences/{token}").status_code < 500
    response = client.post(
        f"/preferences/{token}", data={"action": action, "category": ["News"], "csrf_token": token_of(client)}
    )
    assert response.status_code < 500, response.text[:300]


CONTENT_TYPES = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "multipart/form-data; boundary=x",
        "application/json",
        "text/plain; charset=utf-16",
        "application/x-www-form-urlencoded; charset=latin-1",
        "",
    ]
)


@FUZZ
@given(
    path=st.sampled_from(
        ["/subscribe", "/confirm/x", "/preferences/x", "/unsubscribe/x", "/webhooks/sendgrid", "/"]
    ),
    content_type=CONTENT_TYPES,
    body=st.binary(max_size=300)
    | st.sampled_from(
        [b"email=%ff%fe&category=News", b"--x\r\nContent-Disposition: form-data\r\n\r\n", b"a=" * 60]
    ),
    method=st.sampled_from(["POST", "GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
)
def test_any_raw_request_is_answered_without_a_500(
    site: dict[str, Any], path: str, content_type: str, body: bytes, method: str
) -> None:
    client = site["client"]
    token = token_of(client)
    if path != "/webhooks/sendgrid" and content_type.startswith("application/x-www"):
        body = body + f"&csrf_token={token}".encode()
    signed_path = path
    if path.endswith("/x"):
        purpose = {"/confirm/x": CONFIRM, "/preferences/x": PREFERENCES}.get(path, UNSUBSCRIBE)
        signed_path = path[:-1] + Signer(SECRET).sign(purpose, "fuzz@example.com")
    response = client.request(method, signed_path, content=body, headers={"Content-Type": content_type})
    web_of(client).jobs.join()
    assert response.status_code < 500, (response.status_code, response.text[:300])


def test_a_busy_database_is_a_503_that_says_try_again(
    site: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.store import DatabaseBusyError

    def busy(*args: Any, **kwargs: Any) -> Any:
        raise DatabaseBusyError("the database is locked by another writer; try again in a minute.")

    monkeypatch.setattr(subs, "get", busy)
    token = Signer(SECRET).sign(PREFERENCES, "reader@example.com")
    response = site["client"].get(f"/preferences/{token}")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "60" and "try again in a minute" in response.text


@FUZZ
@given(edition_id=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60))
def test_any_archive_address_is_answered_without_a_500(site: dict[str, Any], edition_id: str) -> None:
    from urllib.parse import quote

    client = site["client"]
    site["config"].posts_path.mkdir(exist_ok=True)  # a site that is set up: only the address is hostile
    for path in ("/archive", "/archive/feed.xml", f"/archive/{quote(edition_id, safe='')}"):
        response = client.get(path)
        assert response.status_code < 500, (path, response.status_code, response.text[:300])
