"""The web app through Starlette's TestClient: every page, and every kind of hostile input.

Mail goes to a recording sender (or the real outbox backend where that is the point), the
database is a real store, and after every refusal the test checks that the store holds exactly
what it held before: nothing half-written.
"""

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from digest import subscribers as subs
from digest.config import Config
from digest.errors import SendError
from digest.links import CONFIRM, PREFERENCES, UNSUBSCRIBE, Signer
from digest.send.base import OutgoingMessage
from digest.store import Store, open_store, subscriber_categories, subscribers, subscription_events
from digest.web import create_app
from digest.web.app import CSRF_COOKIE, RateLimiter, WebApp, client_key

SECRET = "web-test-secret-0123456789-abcdefghijklmnop"
BASE = "http://testserver"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
URL_RE = re.compile(r"http://testserver/[a-z]+/[A-Za-z0-9_.%-]+")


class RecordingSender:
    """A Sender that keeps every message; ``fail`` makes the next sends raise SendError."""

    name = "recording"

    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []
        self.fail = False

    def send_one(self, message: OutgoingMessage) -> str:
        if self.fail:
            raise SendError("provider down")
        self.sent.append(message)
        return f"id-{len(self.sent)}"

    def send_batch(self, batch: Any) -> Any:  # pragma: no cover - the web app never batches
        raise NotImplementedError

    def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_SECRET", SECRET)


@pytest.fixture
def config(make_config: Callable[..., Config]) -> Config:
    return make_config(
        web={"base_url": BASE, "subscribe_per_hour": 50, "confirm_hours": 48},
        sender={"outbox": "outbox"},
        database={"url": "sqlite:///web.db"},
        site={"name": "The Test Brief"},
    )


@pytest.fixture
def db(config: Config) -> Iterator[Store]:
    opened = open_store(config)
    try:
        yield opened
    finally:
        opened.dispose()


@pytest.fixture
def sender() -> RecordingSender:
    return RecordingSender()


@pytest.fixture
def client(config: Config, db: Store, sender: RecordingSender) -> Iterator[TestClient]:
    with TestClient(create_app(config, store=db, sender=sender), base_url=BASE) as c:
        yield c


@pytest.fixture
def signer() -> Signer:
    return Signer(SECRET)


# --- helpers -----------------------------------------------------------------------------------


def web_of(client: TestClient) -> WebApp:
    return client.app.state.web  # type: ignore[attr-defined,no-any-return]


def csrf_token(client: TestClient, path: str = "/") -> str:
    response = client.get(path)
    assert response.status_code == 200, text(response)
    match = CSRF_RE.search(text(response))
    assert match, f"no CSRF field on {path}"
    return match.group(1)


def post_subscribe(
    client: TestClient,
    email: str,
    categories: tuple[str, ...] = ("News",),
    *,
    name: str = "",
    token: str | None = None,
    **extra: Any,
) -> Any:
    data: dict[str, Any] = {"email": email, "name": name, "category": list(categories)}
    data["csrf_token"] = token if token is not None else csrf_token(client)
    response = client.post("/subscribe", data=data, **extra)
    web_of(client).jobs.join()  # the look-up, write and email run after the answer
    return response


def snapshot(store: Store) -> tuple[Any, ...]:
    """Everything the web app may write, to compare before and after a refused request."""
    with store.reading() as c:
        return (
            c.execute(select(subscribers.c.email, subscribers.c.status, subscribers.c.name)).all(),
            c.execute(select(subscriber_categories)).all(),
            c.execute(select(func.count()).select_from(subscription_events)).scalar_one(),
        )


def link_in(message: OutgoingMessage, path: str) -> str:
    urls = [u for u in URL_RE.findall(message.text) if f"/{path}/" in u]
    assert urls, f"no /{path}/ link in:\n{message.text}"
    assert urls[0] in message.html
    return urls[0].removeprefix(BASE)


def main_text(html: str) -> str:
    """The page's <main>, for comparing two answers without the CSRF field."""
    return html.split("<main", 1)[1].split("</main>", 1)[0]


def text(response: Any) -> str:
    """A page's HTML with entities decoded (Jinja escapes the apostrophe in "You're")."""
    return html.unescape(response.text)


def activate(store: Store, config: Config, email: str, cats: tuple[str, ...] = ("News",)) -> None:
    subs.subscribe(store, config, email, cats, source="test", confirmed=True)


# --- pages ---------------------------------------------------------------------------------


def test_subscribe_page_is_accessible_form_with_categories(client: TestClient, config: Config) -> None:
    response = client.get("/")
    assert response.status_code == 200
    html = text(response)
    assert '<html lang="en">' in html
    assert '<meta name="viewport"' in html
    assert '<label for="email">' in html and 'id="email"' in html
    assert '<label for="name">' in html
    assert "<legend>Topics</legend>" in html
    for cat in config.categories:
        assert cat.name in html and cat.description in html
    assert html.count('type="checkbox"') == len(config.categories)
    assert "<script" not in html
    assert CSRF_COOKIE in response.headers["set-cookie"]
    assert "httponly" in response.headers["set-cookie"].lower()
    assert client.get("/subscribe").status_code == 200


def test_security_headers_on_every_response(client: TestClient) -> None:
    for path in ("/", "/healthz", "/confirm/garbage", "/no-such-page", "/static/style.css"):
        headers = client.get(path).headers
        csp = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp
        assert "script-src" not in csp and "unsafe-inline" not in csp  # default-src 'none' covers scripts
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-frame-options"] == "DENY"
    assert client.get("/confirm/garbage").headers["cache-control"] == "no-store"


def test_static_css_and_healthz(client: TestClient) -> None:
    css = client.get("/static/style.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert ":focus-visible" in css.text
    health = client.get("/healthz")
    assert health.status_code == 200 and health.text.strip() == "ok"


def test_healthz_reports_a_dead_database(config: Config, db: Store, sender: RecordingSender) -> None:
    class DeadStore:
        def reading(self) -> Any:
            raise RuntimeError("the database server went away")

    app = create_app(config, store=db, sender=sender)
    app.state.web.store = DeadStore()
    with TestClient(app) as c:
        response = c.get("/healthz")
    assert response.status_code == 503 and "database unavailable" in text(response)


def test_not_found_and_wrong_method_get_pages(client: TestClient) -> None:
    missing = client.get("/wp-login.php")
    assert missing.status_code == 404 and "Page not found" in text(missing)
    wrong = client.put("/subscribe", data={"email": "a@example.com"})
    assert wrong.status_code == 405


def test_whole_flow_subscribe_confirm_preferences_one_click(
    client: TestClient, db: Store, sender: RecordingSender, config: Config
) -> None:
    response = post_subscribe(client, "Reader@Example.COM", ("News", "Tech"), name="Ana")
    assert response.status_code == 200
    assert "Check your inbox" in text(response)
    sub = subs.get(db, "reader@example.com")
    assert sub is not None and sub.status == "pending"
    assert sub.categories == ("news", "tech") and sub.name == "Ana"

    assert len(sender.sent) == 1
    mail = sender.sent[0]
    assert mail.to == "Reader@example.com"
    assert "Confirm your subscription" in mail.subject
    assert mail.headers.get("Auto-Submitted") == "auto-generated"
    assert "48 hours" in mail.text
    assert "Ana" not in mail.text and "Ana" not in mail.html  # typed-in names never reach a stranger's inbox
    confirm_path = link_in(mail, "confirm")

    page = client.get(confirm_path)  # what a mail scanner does
    assert page.status_code == 200 and "Yes, subscribe me" in text(page)
    assert "News, Tech" in text(page)
    assert subs.get(db, "reader@example.com").status == "pending"  # type: ignore[union-attr]

    token = CSRF_RE.search(text(page)).group(1)  # type: ignore[union-attr]
    done = client.post(confirm_path, data={"csrf_token": token})
    assert done.status_code == 200 and "You're subscribed" in text(done)
    assert subs.get(db, "reader@example.com").status == "active"  # type: ignore[union-attr]
    prefs_path = re.search(r'href="http://testserver(/preferences/[^"]+)"', text(done)).group(1)  # type: ignore[union-attr]

    prefs = client.get(prefs_path)
    assert prefs.status_code == 200 and "Reader@example.com" in text(prefs)
    assert re.search(r'value="News" id="cat-1"\s+checked', text(prefs))
    assert not re.search(r'value="Data Science" id="cat-2"\s+checked', text(prefs))
    token = CSRF_RE.search(text(prefs)).group(1)  # type: ignore[union-attr]
    saved = client.post(
        prefs_path, data={"csrf_token": token, "action": "save", "category": ["Data Science"]}
    )
    assert saved.status_code == 200 and "Your topics are saved" in text(saved)
    assert subs.get(db, "reader@example.com").categories == ("data science",)  # type: ignore[union-attr]

    paused = client.post(prefs_path, data={"csrf_token": token, "action": "pause"})
    assert paused.status_code == 200 and "Resume emails" in text(paused)
    assert subs.get(db, "reader@example.com").status == "paused"  # type: ignore[union-attr]
    resumed = client.post(prefs_path, data={"csrf_token": token, "action": "resume"})
    assert resumed.status_code == 200
    assert subs.get(db, "reader@example.com").status == "active"  # type: ignore[union-attr]

    # RFC 8058 one-click, as a mail provider sends it: no cookies, no CSRF token, no Origin.
    unsubscribe_path = "/unsubscribe/" + Signer(SECRET).sign(UNSUBSCRIBE, "Reader@example.com")
    with TestClient(client.app, base_url=BASE) as mail_client:
        one_click = mail_client.post(
            unsubscribe_path,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert one_click.status_code == 200
    assert subs.get(db, "reader@example.com").status == "unsubscribed"  # type: ignore[union-attr]
    kinds = [(e["kind"], e["source"]) for e in subs.events_for(db, "reader@example.com")]
    assert kinds == [
        ("subscribe", "web"),
        ("confirm", "web"),
        ("categories", "preferences"),
        ("pause", "preferences"),
        ("resume", "preferences"),
        ("unsubscribe", "one-click"),
    ]
    after = client.get(prefs_path)
    assert "Unsubscribed" in text(after) and "Subscribe again" in text(after)


def test_real_outbox_sender_writes_the_confirmation_eml(config: Config) -> None:
    """create_app with nothing given opens the configured store and outbox, as `digest serve` does."""
    from digest.send.outbox import read_outbox

    with TestClient(create_app(config), base_url=BASE) as c:
        assert post_subscribe(c, "eml@example.com").status_code == 200
    messages = read_outbox(config.path("outbox"))
    assert len(messages) == 1
    msg = messages[0]
    assert msg["To"] == "eml@example.com"
    body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "http://testserver/confirm/" in body


# --- GET never changes anything ------------------------------------------------------------


def test_following_links_changes_nothing(
    client: TestClient, db: Store, config: Config, signer: Signer
) -> None:
    post_subscribe(client, "pending@example.com")
    activate(db, config, "active@example.com")
    before = snapshot(db)
    for email in ("pending@example.com", "active@example.com"):
        for path in (
            f"/confirm/{signer.sign(CONFIRM, email)}",
            f"/preferences/{signer.sign(PREFERENCES, email)}",
            f"/unsubscribe/{signer.sign(UNSUBSCRIBE, email)}",
        ):
            assert client.get(path).status_code == 200
            assert client.head(path).status_code == 200
    assert snapshot(db) == before
    ask = client.get(f"/unsubscribe/{signer.sign(UNSUBSCRIBE, 'active@example.com')}")
    assert "Unsubscribe?" in text(ask)
    assert 'name="List-Unsubscribe" value="One-Click"' in text(ask)


# --- no enumeration --------------------------------------------------------------------------


def test_known_and_unknown_addresses_get_the_same_answer(
    client: TestClient, db: Store, config: Config, sender: RecordingSender
) -> None:
    activate(db, config, "known@example.com", ("Tech",))
    subs.subscribe(db, config, "paused@example.com", ("Tech",), source="test", confirmed=True)
    subs.set_status(db, "paused@example.com", "paused", source="test")
    subs.subscribe(db, config, "gone@example.com", ("Tech",), source="test", confirmed=True)
    subs.unsubscribe(db, "gone@example.com", source="test")
    subs.subscribe(db, config, "bounced@example.com", ("Tech",), source="test", confirmed=True)
    subs.set_status(db, "bounced@example.com", "bounced", source="test")

    def answer(email: str) -> tuple[int, str, list[str]]:
        r = post_subscribe(client, email, ("News",))
        page = main_text(text(r)).replace(email, "ADDRESS")
        return r.status_code, page, sorted(k for k in r.headers if k != "content-length")

    new = answer("new@example.com")
    for email in ("known@example.com", "paused@example.com", "gone@example.com", "bounced@example.com"):
        assert answer(email) == new, email

    # An active or paused reader's subscription is untouched by a stranger's form.
    assert subs.get(db, "known@example.com").categories == ("tech",)  # type: ignore[union-attr]
    assert subs.get(db, "known@example.com").status == "active"  # type: ignore[union-attr]
    assert subs.get(db, "paused@example.com").status == "paused"  # type: ignore[union-attr]
    assert subs.get(db, "bounced@example.com").status == "bounced"  # type: ignore[union-attr]
    # Someone who unsubscribed can come back, through double opt-in again.
    assert subs.get(db, "gone@example.com").status == "pending"  # type: ignore[union-attr]

    by_address = {m.to: m for m in sender.sent}
    assert set(by_address) == {
        "new@example.com",
        "known@example.com",
        "paused@example.com",
        "gone@example.com",
    }
    assert "already subscribed" in by_address["known@example.com"].subject
    assert "/preferences/" in by_address["known@example.com"].text
    assert "/confirm/" not in by_address["known@example.com"].text
    assert "/confirm/" in by_address["gone@example.com"].text


def test_at_most_one_email_per_address_per_hour(
    client: TestClient, db: Store, config: Config, sender: RecordingSender
) -> None:
    activate(db, config, "active@example.com")
    clock = [1000.0]
    web_of(client).resend_limit.clock = lambda: clock[0]
    for _ in range(3):
        assert post_subscribe(client, "active@example.com").status_code == 200
        assert post_subscribe(client, "new@example.com").status_code == 200
    assert sorted(m.to for m in sender.sent) == ["active@example.com", "new@example.com"]
    clock[0] += 3601
    post_subscribe(client, "ACTIVE@example.com")
    assert [m.to for m in sender.sent].count("active@example.com") == 2


def test_double_submit_makes_one_pending_row_and_one_email(
    client: TestClient, db: Store, sender: RecordingSender
) -> None:
    token = csrf_token(client)
    first = post_subscribe(client, "twice@example.com", token=token)
    second = post_subscribe(client, "twice@example.com", token=token)
    assert first.status_code == second.status_code == 200
    assert main_text(text(first)) == main_text(text(second))
    with db.reading() as c:
        assert c.execute(select(func.count()).select_from(subscribers)).scalar_one() == 1
    assert len(sender.sent) == 1


def test_send_failure_keeps_the_answer_and_allows_a_retry(
    client: TestClient, db: Store, sender: RecordingSender, caplog: pytest.LogCaptureFixture
) -> None:
    sender.fail = True
    with caplog.at_level(logging.ERROR, logger="digest.web.app"):
        response = post_subscribe(client, "later@example.com")
    assert response.status_code == 200 and "Check your inbox" in text(response)
    assert "provider down" in caplog.text
    assert subs.get(db, "later@example.com").status == "pending"  # type: ignore[union-attr]
    sender.fail = False
    post_subscribe(client, "later@example.com")
    assert [m.to for m in sender.sent] == ["later@example.com"]


# --- hostile input: the subscribe form -------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "says"),
    [
        ("", "Enter your email address"),
        ("not-an-email", "not a valid email address"),
        ("a@b", "not a valid email address"),
        ("two@@example.com", "not a valid email address"),
        ("x" * 65 + "@example.com", "not a valid email address"),
        ("a" * 60 + "@" + "b" * 200 + ".com", "too long"),
        ("y" * 5000 + "@example.com", "too long"),
        ("ana@example.com\r\nBcc: victim@example.org", "line breaks"),
        ("ana@example.com\nX-Evil: 1", "line breaks"),
        ('"><script>alert(1)</script>@example.com', "not a valid email address"),
    ],
)
def test_bad_emails_are_refused_and_nothing_is_written(
    client: TestClient, db: Store, sender: RecordingSender, email: str, says: str
) -> None:
    before = snapshot(db)
    response = post_subscribe(client, email)
    assert response.status_code == 400
    assert says in text(response)
    assert 'aria-invalid="true"' in text(response)
    assert "<script>alert(1)" not in response.text  # the echoed value is escaped
    assert snapshot(db) == before
    assert sender.sent == []


def test_unicode_domain_is_accepted_and_stored_idna(
    client: TestClient, db: Store, sender: RecordingSender
) -> None:
    response = post_subscribe(client, "Ana@Bücher.Example")
    assert response.status_code == 200
    sub = subs.get(db, "ana@xn--bcher-kva.example")
    assert sub is not None and sub.email == "Ana@xn--bcher-kva.example"
    assert sender.sent[0].to == "Ana@xn--bcher-kva.example"
    # The same mailbox typed in Unicode again is the same subscriber, not a second row.
    post_subscribe(client, "ana@bücher.example")
    with db.reading() as c:
        assert c.execute(select(func.count()).select_from(subscribers)).scalar_one() == 1


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("Ana\r\nBcc: victim@example.org", "line breaks"),
        ("Ana\nSubject: win", "line breaks"),
        ("Ana\x00", "control characters"),
        ("Ana\u2028Bcc: x@example.org", "line breaks"),
        ("N" * 101, "at most 100 characters"),
    ],
)
def test_hostile_names_are_refused_and_nothing_is_written(
    client: TestClient, db: Store, sender: RecordingSender, name: str, says: str
) -> None:
    before = snapshot(db)
    response = post_subscribe(client, "ana@example.com", name=name)
    assert response.status_code == 400 and says in text(response)
    assert "Bcc: victim" not in text(response)  # the bad name is not echoed back
    assert snapshot(db) == before and sender.sent == []


def test_name_with_markup_is_stored_as_text_and_escaped(client: TestClient, db: Store) -> None:
    post_subscribe(client, "markup@example.com", name="<b>Ana</b> & co")
    assert subs.get(db, "markup@example.com").name == "<b>Ana</b> & co"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("categories", "says"),
    [
        (("Sport",), "There is no topic called “Sport”"),
        (("News", "<img src=x>"), "There is no topic called"),
        (("Z" * 5000,), "There is no topic called"),
        ((), "Pick at least one topic"),
    ],
)
def test_unknown_or_missing_categories_are_refused(
    client: TestClient, db: Store, sender: RecordingSender, categories: tuple[str, ...], says: str
) -> None:
    before = snapshot(db)
    response = post_subscribe(client, "cats@example.com", categories)
    assert response.status_code == 400 and says in text(response)
    assert "<img src=x>" not in response.text
    assert snapshot(db) == before and sender.sent == []


def test_category_names_match_without_case(client: TestClient, db: Store) -> None:
    assert post_subscribe(client, "case@example.com", ("  data   SCIENCE ", "news")).status_code == 200
    assert subs.get(db, "case@example.com").categories == ("data science", "news")  # type: ignore[union-attr]


def test_oversized_body_is_refused(client: TestClient, db: Store) -> None:
    before = snapshot(db)
    token = csrf_token(client)
    response = client.post(
        "/subscribe",
        data={"email": "big@example.com", "category": "News", "csrf_token": token, "pad": "x" * 200_000},
    )
    assert response.status_code == 413 and "Too much data" in text(response)
    assert snapshot(db) == before


def test_file_upload_instead_of_fields_is_refused(client: TestClient, db: Store) -> None:
    before = snapshot(db)
    token = csrf_token(client)
    response = client.post(
        "/subscribe",
        data={"csrf_token": token, "category": "News"},
        files={"email": ("x.txt", b"a@example.com", "text/plain")},
    )
    assert response.status_code == 400
    assert snapshot(db) == before


# --- CSRF ------------------------------------------------------------------------------------


def test_subscribe_without_or_with_a_bad_csrf_token_is_refused(
    client: TestClient, db: Store, sender: RecordingSender
) -> None:
    before = snapshot(db)
    client.get("/")  # has the cookie
    missing = client.post("/subscribe", data={"email": "c@example.com", "category": "News"})
    assert missing.status_code == 403 and "Please try that again" in text(missing)
    bad = post_subscribe(client, "c@example.com", token="x" * 43)
    assert bad.status_code == 403
    # A token that is valid for someone else's cookie does not work with ours.
    with TestClient(client.app, base_url=BASE) as other:
        foreign = csrf_token(other)
    assert post_subscribe(client, "c@example.com", token=foreign).status_code == 403
    # No cookie at all (the attacker's page cannot send ours).
    token = csrf_token(client)
    client.cookies.clear()
    assert post_subscribe(client, "c@example.com", token=token).status_code == 403
    assert snapshot(db) == before and sender.sent == []


def test_origin_and_fetch_metadata_are_checked(client: TestClient, db: Store) -> None:
    before = snapshot(db)
    token = csrf_token(client)
    evil = post_subscribe(client, "o@example.com", token=token, headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403
    cross = post_subscribe(client, "o@example.com", token=token, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    assert snapshot(db) == before
    # Our Referrer-Policy makes browsers send "Origin: null" on our own forms: that must work.
    ok = post_subscribe(
        client, "o@example.com", token=token, headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"}
    )
    assert ok.status_code == 200
    assert post_subscribe(client, "o2@example.com", token=token, headers={"Origin": BASE}).status_code == 200


def test_confirm_and_preferences_posts_need_csrf(
    client: TestClient, db: Store, config: Config, signer: Signer
) -> None:
    post_subscribe(client, "p@example.com")
    activate(db, config, "q@example.com")
    before = snapshot(db)
    confirm = f"/confirm/{signer.sign(CONFIRM, 'p@example.com')}"
    prefs = f"/preferences/{signer.sign(PREFERENCES, 'q@example.com')}"
    assert client.post(confirm, data={}).status_code == 403
    for action in ("save", "pause", "unsubscribe"):
        response = client.post(prefs, data={"action": action, "category": "Tech"})
        assert response.status_code == 403
        response = client.post(
            prefs,
            data={"action": action, "category": "Tech", "csrf_token": csrf_token(client, prefs)},
            headers={"Origin": "https://evil.example"},
        )
        assert response.status_code == 403
    assert snapshot(db) == before


# --- rate limit ------------------------------------------------------------------------------


def test_subscribe_is_rate_limited_per_client(
    make_config: Callable[..., Config], sender: RecordingSender
) -> None:
    config = make_config(web={"base_url": BASE, "subscribe_per_hour": 3}, database={"url": "sqlite:///rl.db"})
    store = open_store(config)
    try:
        with TestClient(create_app(config, store=store, sender=sender), base_url=BASE) as c:
            token = csrf_token(c)
            for i in range(3):
                assert post_subscribe(c, f"r{i}@example.com", token=token).status_code == 200
            before = snapshot(store)
            limited = post_subscribe(c, "r9@example.com", token=token)
            assert limited.status_code == 429
            assert "Too many attempts" in text(limited) and "try again in about" in text(limited)
            assert 0 < int(limited.headers["retry-after"]) <= 3600
            assert snapshot(store) == before
            assert c.get("/").status_code == 200  # reading the form is not limited
    finally:
        store.dispose()
    assert len(sender.sent) == 3


def test_rate_limiter_window_keys_and_memory_cap() -> None:
    now = [0.0]
    limiter = RateLimiter(2, 3600, clock=lambda: now[0], max_keys=3)
    assert limiter.hit("a") == 0 and limiter.hit("a") == 0
    assert limiter.hit("a") == pytest.approx(3600)
    assert limiter.hit("b") == 0  # another client is not affected
    now[0] = 1800
    assert limiter.hit("a") == pytest.approx(1800)  # refused hits don't push the window out
    now[0] = 3601
    assert limiter.hit("a") == 0
    for key in "cdefg":
        limiter.hit(key)
    assert len(limiter._hits) <= 3
    assert RateLimiter(0).hit("x") == 0  # 0 means no limit


def test_client_key_groups_ipv6_by_64() -> None:
    class Req:
        def __init__(self, host: str) -> None:
            self.client = type("C", (), {"host": host})()

    assert client_key(Req("203.0.113.7")) == "203.0.113.7"  # type: ignore[arg-type]
    assert client_key(Req("2001:db8::1")) == client_key(Req("2001:db8::ffff"))  # type: ignore[arg-type]
    assert client_key(Req("2001:db8::1")) != client_key(Req("2001:db8:0:1::1"))  # type: ignore[arg-type]


# --- tokens ----------------------------------------------------------------------------------


def _forge(token: str, email: str) -> str:
    """Swap the address inside a token, keeping its MAC: what an attacker would try."""
    import base64

    payload, mac = token.split(".")
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    swapped = email + "|" + raw.rsplit("|", 1)[1]
    return base64.urlsafe_b64encode(swapped.encode()).rstrip(b"=").decode() + "." + mac


@pytest.mark.parametrize("purpose", [CONFIRM, PREFERENCES, UNSUBSCRIBE])
def test_forged_damaged_and_wrong_purpose_tokens_change_nothing(
    client: TestClient, db: Store, config: Config, signer: Signer, purpose: str
) -> None:
    post_subscribe(client, "victim@example.com")
    activate(db, config, "active@example.com")
    before = snapshot(db)
    mine = signer.sign(purpose, "attacker@example.com")
    other = next(p for p in (CONFIRM, PREFERENCES, UNSUBSCRIBE) if p != purpose)
    bad_tokens = [
        _forge(mine, "victim@example.com"),
        _forge(signer.sign(purpose, "attacker@example.com"), "active@example.com"),
        signer.sign(other, "active@example.com"),  # a real token, for another page
        Signer("another-secret-0123456789abcdef").sign(purpose, "active@example.com"),
        mine[:-3],
        "garbage",
        "A" * 5000,
    ]
    token = csrf_token(client)
    for bad in bad_tokens:
        path = f"/{purpose}/{bad}"
        page = client.get(path)
        assert page.status_code == 400, bad
        assert "This link doesn't work" in text(page) and "Nothing has been changed" in text(page)
        data = {"csrf_token": token, "action": "unsubscribe", "List-Unsubscribe": "One-Click"}
        assert client.post(path, data=data).status_code == 400
    assert snapshot(db) == before


def test_expired_confirm_link_is_refused(client: TestClient, db: Store, signer: Signer) -> None:
    post_subscribe(client, "slow@example.com")
    old = signer.sign(CONFIRM, "slow@example.com", issued_at=int(time.time()) - 49 * 3600)
    page = client.get(f"/confirm/{old}")
    assert page.status_code == 400 and "expired" in text(page)
    token = csrf_token(client)
    assert client.post(f"/confirm/{old}", data={"csrf_token": token}).status_code == 400
    assert subs.get(db, "slow@example.com").status == "pending"  # type: ignore[union-attr]
    fresh = signer.sign(CONFIRM, "slow@example.com", issued_at=int(time.time()) - 47 * 3600)
    assert client.get(f"/confirm/{fresh}").status_code == 200


def test_preference_and_unsubscribe_links_do_not_expire(
    client: TestClient, db: Store, config: Config, signer: Signer
) -> None:
    activate(db, config, "old@example.com")
    a_year_ago = int(time.time()) - 365 * 86400
    assert (
        client.get(
            f"/preferences/{signer.sign(PREFERENCES, 'old@example.com', issued_at=a_year_ago)}"
        ).status_code
        == 200
    )
    assert (
        client.get(
            f"/unsubscribe/{signer.sign(UNSUBSCRIBE, 'old@example.com', issued_at=a_year_ago)}"
        ).status_code
        == 200
    )


def test_replayed_confirm_links(client: TestClient, db: Store, signer: Signer) -> None:
    post_subscribe(client, "replay@example.com")
    path = f"/confirm/{signer.sign(CONFIRM, 'replay@example.com')}"
    token = csrf_token(client, path)
    first = client.post(path, data={"csrf_token": token})
    second = client.post(path, data={"csrf_token": token})  # double submit, or a replay
    assert first.status_code == second.status_code == 200
    assert "already subscribed" in text(second)
    kinds = [e["kind"] for e in subs.events_for(db, "replay@example.com")]
    assert kinds.count("confirm") == 1
    # After unsubscribing, an old confirmation link must not subscribe them again.
    subs.unsubscribe(db, "replay@example.com", source="test")
    before = snapshot(db)
    again = client.post(path, data={"csrf_token": token})
    assert again.status_code == 400 and "no longer valid" in text(again)
    assert client.get(path).status_code == 400
    assert snapshot(db) == before


def test_links_for_unknown_addresses(client: TestClient, db: Store, signer: Signer) -> None:
    before = snapshot(db)
    assert client.get(f"/confirm/{signer.sign(CONFIRM, 'nobody@example.com')}").status_code == 400
    prefs = client.get(f"/preferences/{signer.sign(PREFERENCES, 'nobody@example.com')}")
    assert prefs.status_code == 400 and "can't find" in text(prefs)
    one_click = client.post(
        f"/unsubscribe/{signer.sign(UNSUBSCRIBE, 'nobody@example.com')}",
        data={"List-Unsubscribe": "One-Click"},
    )
    assert one_click.status_code == 200  # nothing to do is success for a mail client
    assert snapshot(db) == before


# --- one-click unsubscribe -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "source"),
    [
        ({"data": {"List-Unsubscribe": "One-Click"}}, "one-click"),
        ({"files": {"List-Unsubscribe": (None, "One-Click")}}, "one-click"),  # multipart/form-data
        ({"content": b"List-Unsubscribe=One-Click"}, "one-click"),  # no content type at all
        ({"data": {"List-Unsubscribe": "One-Click", "from": "page"}}, "unsubscribe-page"),
    ],
)
def test_one_click_unsubscribe_bodies(
    client: TestClient, db: Store, config: Config, signer: Signer, kwargs: dict[str, Any], source: str
) -> None:
    activate(db, config, "oc@example.com")
    path = f"/unsubscribe/{signer.sign(UNSUBSCRIBE, 'oc@example.com')}"
    client.cookies.clear()
    response = client.post(path, **kwargs)
    assert response.status_code == 200 and "You're unsubscribed" in text(response)
    assert subs.get(db, "oc@example.com").status == "unsubscribed"  # type: ignore[union-attr]
    assert subs.events_for(db, "oc@example.com")[-1]["source"] == source
    again = client.post(path, **kwargs)  # mail clients retry; still fine, nothing new logged
    assert again.status_code == 200
    assert len(subs.events_for(db, "oc@example.com")) == 2


def test_unsubscribe_post_without_one_click_body_changes_nothing(
    client: TestClient, db: Store, config: Config, signer: Signer
) -> None:
    activate(db, config, "keep@example.com")
    path = f"/unsubscribe/{signer.sign(UNSUBSCRIBE, 'keep@example.com')}"
    for kwargs in ({}, {"data": {"List-Unsubscribe": "Yes"}}, {"content": b"hello"}):
        response = client.post(path, **kwargs)
        assert response.status_code == 400 and "Nothing was changed" in text(response)
    assert subs.get(db, "keep@example.com").status == "active"  # type: ignore[union-attr]


def test_unsubscribe_page_button_posts_one_click(
    client: TestClient, db: Store, config: Config, signer: Signer
) -> None:
    activate(db, config, "btn@example.com")
    path = f"/unsubscribe/{signer.sign(UNSUBSCRIBE, 'btn@example.com')}"
    page = client.get(path)
    form = re.search(r'<form method="post" action="([^"]+)">(.*?)</form>', text(page), re.S)
    assert form and form.group(1) == path
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form.group(2)))
    assert client.post(path, data=fields).status_code == 200
    assert subs.get(db, "btn@example.com").status == "unsubscribed"  # type: ignore[union-attr]
    assert "You're unsubscribed" in text(client.get(path))


# --- preference centre -----------------------------------------------------------------------


@pytest.fixture
def prefs(client: TestClient, db: Store, config: Config, signer: Signer) -> tuple[str, str]:
    activate(db, config, "pref@example.com", ("News", "Tech"))
    path = f"/preferences/{signer.sign(PREFERENCES, 'pref@example.com')}"
    return path, csrf_token(client, path)


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"action": "save", "category": ["News", "Cooking"]}, "There is no topic called “Cooking”"),
        ({"action": "save"}, "Pick at least one topic"),
        ({"action": "delete-everything"}, "not one we know"),
        ({}, "not one we know"),
    ],
)
def test_preferences_refuse_bad_changes(
    client: TestClient, db: Store, prefs: tuple[str, str], data: dict[str, Any], says: str
) -> None:
    path, token = prefs
    before = snapshot(db)
    response = client.post(path, data={"csrf_token": token, **data})
    assert response.status_code == 400 and says in text(response)
    assert snapshot(db) == before


def test_preferences_unsubscribe_from_all(client: TestClient, db: Store, prefs: tuple[str, str]) -> None:
    path, token = prefs
    response = client.post(path, data={"csrf_token": token, "action": "unsubscribe"})
    assert response.status_code == 200 and "You're unsubscribed from all emails" in text(response)
    assert "Subscribe again" in text(response) and "Save topics" not in text(response)
    assert subs.get(db, "pref@example.com").status == "unsubscribed"  # type: ignore[union-attr]
    # A stale form from before cannot resume or change anything now.
    before = snapshot(db)
    for data in ({"action": "resume"}, {"action": "pause"}, {"action": "save", "category": "News"}):
        response = client.post(path, data={"csrf_token": token, **data})
        assert response.status_code == 400 and "This address is unsubscribed" in text(response)
    assert snapshot(db) == before


def test_pending_reader_cannot_pause(client: TestClient, db: Store, signer: Signer) -> None:
    post_subscribe(client, "pend@example.com")
    path = f"/preferences/{signer.sign(PREFERENCES, 'pend@example.com')}"
    page = client.get(path)
    assert "Waiting for you to confirm" in text(page)
    response = client.post(path, data={"csrf_token": csrf_token(client, path), "action": "pause"})
    assert response.status_code == 400 and "confirm first" in text(response)
    assert subs.get(db, "pend@example.com").status == "pending"  # type: ignore[union-attr]


# --- the command and its logs -----------------------------------------------------------------


def test_serve_command_is_registered_with_help() -> None:
    from click.testing import CliRunner

    from digest.cli import cli

    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0, result.output
    assert "--host" in result.output and "--port" in result.output and "Example:" in result.output


def test_access_log_lines_do_not_carry_tokens(signer: Signer) -> None:
    from digest.commands.serve import RedactTokens

    token = signer.sign(PREFERENCES, "log@example.com")
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/preferences/{token}?x=1", "1.1", 200),
        None,
    )
    RedactTokens().filter(record)
    line = record.getMessage()
    assert token not in line and "/preferences/…?x=1" in line


def test_flow_on_each_database(store: Store, make_config: Callable[..., Config]) -> None:
    """The same subscribe -> confirm -> one-click path on SQLite and PostgreSQL (conftest's store)."""
    config = make_config(web={"base_url": BASE})
    sender = RecordingSender()
    with TestClient(create_app(config, store=store, sender=sender), base_url=BASE) as c:
        assert post_subscribe(c, "db@example.com", ("Tech", "News")).status_code == 200
        assert subs.get(store, "db@example.com").status == "pending"  # type: ignore[union-attr]
        confirm_path = link_in(sender.sent[0], "confirm")
        assert c.post(confirm_path, data={"csrf_token": csrf_token(c, confirm_path)}).status_code == 200
        assert subs.get(store, "db@example.com").status == "active"  # type: ignore[union-attr]
        before = snapshot(store)
        assert post_subscribe(c, "db@example.com", ("News",)).status_code == 200
        assert snapshot(store) == before
        one_click = c.post(
            f"/unsubscribe/{Signer(SECRET).sign(UNSUBSCRIBE, 'db@example.com')}",
            data={"List-Unsubscribe": "One-Click"},
        )
        assert one_click.status_code == 200
    assert subs.get(store, "db@example.com").status == "unsubscribed"  # type: ignore[union-attr]


# --- SendGrid Event Webhook ------------------------------------------------------------------


@pytest.fixture
def webhook_site(make_config: Callable[..., Config], sender: RecordingSender) -> Iterator[dict[str, Any]]:
    """An app with a webhook key configured, the private half to sign with, and its store."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP256R1())
    public_b64 = base64.b64encode(
        private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    config = make_config(
        web={"base_url": BASE, "sendgrid_webhook_public_key": public_b64}, database={"url": "sqlite:///wh.db"}
    )
    store = open_store(config)
    try:
        with TestClient(create_app(config, store=store, sender=sender), base_url=BASE) as c:
            yield {"client": c, "store": store, "config": config, "private": private}
    finally:
        store.dispose()


def _signed(private: Any, body: bytes, timestamp: str | None = None) -> dict[str, str]:
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from digest.send.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER

    ts = timestamp or str(int(time.time()))
    signature = private.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        SIGNATURE_HEADER: base64.b64encode(signature).decode(),
        TIMESTAMP_HEADER: ts,
        "Content-Type": "application/json",
    }


def test_sendgrid_webhook_marks_bounces_and_refuses_forgeries(webhook_site: dict[str, Any]) -> None:
    import json

    c, store, private = webhook_site["client"], webhook_site["store"], webhook_site["private"]
    activate(store, webhook_site["config"], "bounce@example.com")
    body = json.dumps(
        [{"email": "bounce@example.com", "event": "bounce", "sg_event_id": "ev-1", "timestamp": 1767225600}]
    ).encode()
    before = snapshot(store)

    unsigned = c.post("/webhooks/sendgrid", content=body, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 403
    tampered = c.post(
        "/webhooks/sendgrid", content=body.replace(b"bounce@", b"other@"), headers=_signed(private, body)
    )
    assert tampered.status_code == 403
    other_key = ec_key()
    assert c.post("/webhooks/sendgrid", content=body, headers=_signed(other_key, body)).status_code == 403
    stale = _signed(private, body, str(int(time.time()) - 3600))
    replay = c.post("/webhooks/sendgrid", content=body, headers=stale)
    assert replay.status_code == 403 and "stale" in replay.text
    assert snapshot(store) == before

    ok = c.post("/webhooks/sendgrid", content=body, headers=_signed(private, body))
    assert ok.status_code == 200, ok.text
    assert ok.json()["recorded"] == 1
    assert subs.get(store, "bounce@example.com").status == "bounced"  # type: ignore[union-attr]
    again = c.post("/webhooks/sendgrid", content=body, headers=_signed(private, body))  # SendGrid retries
    assert again.status_code == 200 and again.json()["duplicates"] == 1

    # A batch larger than any form is still accepted here (SendGrid posts many events at once).
    batch = json.dumps(
        [
            {"event": "delivered", "email": f"r{i}@example.com", "sg_event_id": f"d{i}", "reason": "x" * 300}
            for i in range(250)
        ]
    ).encode()
    assert len(batch) > 64 * 1024
    big = c.post("/webhooks/sendgrid", content=batch, headers=_signed(private, batch))
    assert big.status_code == 200 and big.json()["recorded"] == 250

    not_json = b"{not json"
    assert (
        c.post("/webhooks/sendgrid", content=not_json, headers=_signed(private, not_json)).status_code == 400
    )
    not_list = b'{"event": "bounce"}'
    assert (
        c.post("/webhooks/sendgrid", content=not_list, headers=_signed(private, not_list)).status_code == 400
    )


def ec_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def test_sendgrid_webhook_without_a_key_refuses_everything(client: TestClient, db: Store) -> None:
    response = client.post("/webhooks/sendgrid", content=b"[]", headers=_signed(ec_key(), b"[]"))
    assert response.status_code == 403 and "not configured" in response.text


def test_bad_webhook_key_stops_the_app_with_a_clear_message(
    make_config: Callable[..., Config], db: Store, sender: RecordingSender
) -> None:
    from digest.errors import ConfigError

    config = make_config(web={"sendgrid_webhook_public_key": "not a key"})
    with pytest.raises(ConfigError, match="sendgrid_webhook_public_key"):
        create_app(config, store=db, sender=sender)


def test_reader_token_links_work_and_are_bound_to_the_reader(
    client: TestClient, db: Store, config: Config, signer: Signer
) -> None:
    """The short links every email carries (id + MAC, no address) open the right reader's pages."""
    from digest.links import LinkMaker

    activate(db, config, "ana@example.com")
    activate(db, config, "bo@example.com")
    ana, bo = subs.get(db, "ana@example.com"), subs.get(db, "bo@example.com")
    assert ana is not None and bo is not None
    pref, unsub = LinkMaker(BASE, signer).personal_urls(ana.email, ana.id)
    assert "ana" not in pref + unsub
    page = client.get(pref.removeprefix(BASE))
    assert page.status_code == 200 and "ana@example.com" in text(page)
    forged = signer.sign_reader(UNSUBSCRIBE, bo.id, "ana@example.com")  # ana's MAC on bo's id
    refused = client.post(f"/unsubscribe/{forged}", content=b"List-Unsubscribe=One-Click")
    assert refused.status_code >= 400 and subs.get(db, "bo@example.com").status == "active"  # type: ignore[union-attr]
    unknown = signer.sign_reader(UNSUBSCRIBE, 99_999, "ana@example.com")
    assert client.get(f"/unsubscribe/{unknown}").status_code >= 400
    huge = signer.sign_reader(UNSUBSCRIBE, 2**62, "ana@example.com")
    assert 400 <= client.get(f"/unsubscribe/{huge}").status_code < 500
    done = client.post(unsub.removeprefix(BASE), content=b"List-Unsubscribe=One-Click")
    assert done.status_code == 200 and "You're unsubscribed" in text(done)
    assert subs.get(db, "ana@example.com").status == "unsubscribed"  # type: ignore[union-attr]
    assert subs.get(db, "bo@example.com").status == "active"  # type: ignore[union-attr]
