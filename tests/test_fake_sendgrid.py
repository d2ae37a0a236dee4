"""The fake SendGrid itself: it must really be slow, really stall, really reset, really throttle,
log every accepted recipient, and post Event Webhook events the real web app accepts.

Fault tests elsewhere trust the fake's log and timing; these tests are why they may.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_sendgrid import EventWebhook, FakeSendGrid, Link, event_for

KEY = "SG.fake-test-key"


def body(*emails: str, edition: str = "2026-W02", batch: str = "7", pad: int = 0) -> bytes:
    """A valid /v3/mail/send body, one personalization per address, ``pad`` bytes of HTML more."""
    return json.dumps(
        {
            "from": {"email": "brief@example.com"},
            "subject": "The brief",
            "content": [
                {"type": "text/plain", "value": "hello"},
                {"type": "text/html", "value": "<p>hello</p>" + "x" * pad},
            ],
            "custom_args": {"edition": edition},
            "personalizations": [
                {"to": [{"email": e}], "custom_args": {"batch": batch, "subscriber_id": str(i)}}
                for i, e in enumerate(emails)
            ],
        }
    ).encode()


def post(url: str, data: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], float]:
    """One POST on a fresh connection: status, headers, seconds taken."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    t0 = time.monotonic()
    try:
        conn.request(
            "POST",
            "/v3/mail/send",
            body=data,
            headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        response.read()
        return response.status, dict(response.getheaders()), time.monotonic() - t0
    finally:
        conn.close()


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid(api_key=KEY) as server:
        yield server


def test_round_trip_and_handshake_are_paid(fake: FakeSendGrid) -> None:
    _, _, loopback = post(fake.url, body("a@example.com"))
    with FakeSendGrid(api_key=KEY, link=Link(round_trip=0.2, handshake_round_trips=1)) as slow:
        status, _, took = post(slow.url, body("b@example.com"))
        assert status == 202
        assert took >= 0.4  # one round trip to connect, one for the request
        # a kept-alive connection pays the round trip, not the handshake
        host, port = slow.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        conn.request("POST", "/v3/mail/send", body=body("c@example.com"), headers=headers)
        conn.getresponse().read()
        t0 = time.monotonic()
        conn.request("POST", "/v3/mail/send", body=body("d@example.com"), headers=headers)
        assert conn.getresponse().status == 202
        again = time.monotonic() - t0
        conn.close()
        assert 0.2 <= again < 0.4  # a handshake would make it 0.4 or more
    assert loopback < 0.4


def test_upload_bandwidth_is_one_shared_link() -> None:
    """1 MB at 8 Mbit/s is a second; two 0.5 MB requests at once also take a second between them."""
    link = Link(upload_bytes_per_second=1_000_000)
    with FakeSendGrid(api_key=KEY, link=link) as fake:
        _, _, one = post(fake.url, body("a@example.com", pad=1_000_000))
        assert 1.0 <= one < 3.0
        took: list[float] = []
        threads = [
            threading.Thread(target=lambda e=e: took.append(post(fake.url, body(e, pad=500_000))[2]))
            for e in ("b@example.com", "c@example.com")
        ]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        both = time.monotonic() - t0
        assert both >= 1.0 and max(took) >= 0.9  # they queued behind each other (each alone: 0.5 s)
        assert min(took) >= 0.5
        assert fake.mail_requests() == 3 and len(fake.log) == 3


def test_stall_accepts_and_never_answers(fake: FakeSendGrid) -> None:
    fake.fail_next("stall")
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        post(fake.url, body("a@example.com", "b@example.com"), timeout=0.5)
    assert 0.5 <= time.monotonic() - t0 < 5
    # the provider took it: the log says so, though the client never heard
    assert [e.email for e in fake.log] == ["a@example.com", "b@example.com"]
    assert fake.state.stalled == 1
    assert post(fake.url, body("c@example.com"))[0] == 202  # the next request is answered


def test_stall_ends_when_the_server_stops() -> None:
    fake = FakeSendGrid(api_key=KEY).start()
    fake.fail_next("stall")  # no duration: until the server stops
    errors: list[BaseException] = []

    def client() -> None:
        try:
            post(fake.url, body("a@example.com"), timeout=30)
        except (OSError, http.client.HTTPException) as exc:
            errors.append(exc)

    t = threading.Thread(target=client)
    t.start()
    while not fake.log:
        time.sleep(0.01)
    t0 = time.monotonic()
    fake.stop()
    t.join(10)
    assert not t.is_alive() and time.monotonic() - t0 < 5
    assert len(errors) == 1  # the connection closed without an answer


def test_late_answer_arrives_after_the_client_gave_up(fake: FakeSendGrid) -> None:
    fake.fail_next("late", seconds=0.6)
    with pytest.raises(TimeoutError):
        post(fake.url, body("a@example.com"), timeout=0.3)
    fake.fail_next("late", seconds=0.3)
    status, headers, took = post(fake.url, body("b@example.com"), timeout=5)
    assert status == 202 and headers["X-Message-Id"] and took >= 0.3
    assert fake.copies() == {"a@example.com": 1, "b@example.com": 1}


@pytest.mark.parametrize("kind", ["reset_before", "reset_after"])
def test_resets_are_real_tcp_resets(fake: FakeSendGrid, kind: str) -> None:
    fake.fail_next(kind)
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        post(fake.url, body("a@example.com"))
    assert fake.state.resets == 1
    # before: the provider never took it; after: it did, and the client cannot tell which
    assert fake.copies() == ({} if kind == "reset_before" else {"a@example.com": 1})


def test_raw_reset_is_seen_as_rst_on_the_socket(fake: FakeSendGrid) -> None:
    """A reset, not an orderly close: recv raises ECONNRESET rather than returning b''."""
    fake.fail_next("reset_after")
    host, port = fake.url.removeprefix("http://").split(":")
    data = body("a@example.com")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /v3/mail/send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: "
            + str(len(data)).encode()
            + b"\r\n\r\n"
            + data
        )
        with pytest.raises(ConnectionResetError):
            sock.recv(1024)


def test_every_nth_request_and_a_429_storm(fake: FakeSendGrid) -> None:
    fake.fail_every(3, "500")
    statuses = [post(fake.url, body(f"r{i}@example.com"))[0] for i in range(6)]
    assert statuses == [202, 202, 500, 202, 202, 500]
    fake.state.every.clear()
    fake.storm(1.5)
    t_end = time.time() + 1.5
    status, headers, _ = post(fake.url, body("s@example.com"))
    assert status == 429 and int(headers["X-RateLimit-Reset"]) >= int(t_end) - 1
    assert headers["X-RateLimit-Remaining"] == "0"
    assert post(fake.url, body("s@example.com"))[0] == 429
    time.sleep(max(0.0, t_end - time.time()) + 0.05)
    assert post(fake.url, body("s@example.com"))[0] == 202
    assert fake.copies()["s@example.com"] == 1


def test_the_log_counts_copies_per_edition(fake: FakeSendGrid) -> None:
    post(fake.url, body("a@example.com", "B@example.com", batch="1"))
    post(fake.url, body("b@example.com", "c@example.com", batch="2"))
    post(fake.url, body("a@example.com", edition="2026-W03", batch="3"))
    post(fake.url, body("strasse@x.example", "straße@x.example", batch="4"))
    assert fake.duplicates("2026-W02") == {"b@example.com": 2}
    assert fake.duplicates("2026-W03") == {}
    assert fake.missing(["a@example.com", "c@example.com", "d@example.com"], "2026-W02") == {"d@example.com"}
    # two addresses, not one: the fake compares as SendGrid does (lowercase), not casefold
    assert fake.copies("2026-W02")["straße@x.example"] == 1
    first = fake.log[0]
    assert (first.edition, first.batch, first.custom_args["subscriber_id"]) == ("2026-W02", "1", "0")
    assert fake.state.accepted[first.request].message_id == first.message_id


def test_events_are_shaped_like_sendgrids(fake: FakeSendGrid) -> None:
    post(fake.url, body("a@example.com"))
    event = event_for(fake.log[0], "dropped", 1)
    assert event["event"] == "dropped" and event["email"] == "a@example.com"
    assert event["edition"] == "2026-W02" and event["batch"] == "7"  # custom args at the top level
    assert event["sg_message_id"].startswith(fake.log[0].message_id + ".")
    assert event["reason"]
    with pytest.raises(ValueError):
        event_for(fake.log[0], "opened-twice", 1)


# -- events posted to the real web app ---------------------------------------------------------


class _App:
    """``digest serve``'s app under uvicorn on a free port, in a thread."""

    def __init__(self, config: Any) -> None:
        import uvicorn

        from digest.web.app import create_app

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.server = uvicorn.Server(
            uvicorn.Config(create_app(config), host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}/webhooks/sendgrid"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _events_table(config: Any) -> list[tuple[str, str | None]]:
    from digest.store import open_store

    store = open_store(config)
    try:
        with store.reading() as c:
            rows = c.exec_driver_sql("SELECT kind, email FROM provider_events ORDER BY kind, email").all()
    finally:
        store.dispose()
    return [(r[0], r[1]) for r in rows]


def test_events_reach_digest_serve_signed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from send_fixtures import send_config

    monkeypatch.setenv("DIGEST_SECRET", "test-secret-that-is-long-enough-1234")
    hook = EventWebhook("")
    config = send_config(tmp_path, web={"sendgrid_webhook_public_key": hook.public_key_b64})
    with _App(config) as url:
        hook.url = url
        with FakeSendGrid(api_key=KEY, webhook=hook, auto_events=("processed", "delivered")) as fake:
            post(fake.url, body("a@example.com", "b@example.com"))
            fake.drain_events()
            assert fake.send_events(("deferred",), only=lambda e: e.email == "b@example.com") == [200]
            # a forger without SendGrid's key is refused by the app
            forger = EventWebhook(url)
            assert fake.send_events(("dropped",), webhook=forger) == [403]
    assert [s for s, _ in hook.posted] == [200, 200]
    assert _events_table(config) == [
        ("deferred", "b@example.com"),
        ("delivered", "a@example.com"),
        ("delivered", "b@example.com"),
        ("processed", "a@example.com"),
        ("processed", "b@example.com"),
    ]


def test_a_real_rate_limit_counts_down_and_resets(fake: FakeSendGrid) -> None:
    fake.rate_limit(3, per_seconds=1.0)
    answers = [post(fake.url, body(f"r{i}@example.com")) for i in range(4)]
    assert [a[0] for a in answers] == [202, 202, 202, 429]
    assert [a[1]["X-RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert all(a[1]["X-RateLimit-Limit"] == "3" for a in answers)
    reset = int(answers[3][1]["X-RateLimit-Reset"])
    assert time.time() < reset <= time.time() + 2
    time.sleep(max(0.0, reset - time.time()) + 0.05)
    status, headers, _ = post(fake.url, body("r3@example.com"))
    assert status == 202 and headers["X-RateLimit-Remaining"] == "2"
    assert sum(fake.copies().values()) == 4


def test_requests_in_flight_are_counted(fake: FakeSendGrid) -> None:
    """What a bounded in-flight window is checked against: the most requests open at once."""
    fake.fail_next("late", times=3, seconds=0.5)
    threads = [threading.Thread(target=post, args=(fake.url, body(f"w{i}@example.com"))) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fake.state.max_in_flight == 3
    # The server counts a request out after it has written the answer, which the client may
    # read first: wait for the count rather than racing it.
    deadline = time.monotonic() + 5
    while fake.state.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.state.in_flight == 0
    post(fake.url, body("x@example.com"))
    assert fake.state.max_in_flight == 3
