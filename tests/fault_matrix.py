"""Issue 12's fault matrix: each fault a real network or operator produces, run against the real
send path and judged from the fake SendGrid's own log.

Every case builds a site (posts + readers on SQLite or PostgreSQL), runs ``digest send`` through
the fake under one fault (in this process, or as ``digest`` subprocesses where the fault is a
second process or a kill -9), and returns an ``Outcome``: from the fake's log, how many
addresses got the edition twice (``duplicates``), how many reader-post pairs went out twice
across editions, and who never got it (``missing``); from the database, who is undecided
(in flight) and so accounted for. A case passes when nobody got anything twice and everyone
missing is undecided and listed (nobody silently dropped).

``tests/test_fault_matrix.py`` runs the cases that pass on today's code in CI;
``tests/FAULT_MATRIX_TODO.md`` lists the others. Run any case by hand:

    python tests/fault_matrix.py stall_every_5th --db sqlite
    DIGEST_TEST_POSTGRES_URL=postgresql+psycopg://... python tests/fault_matrix.py --all --db postgresql
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from fake_sendgrid import FakeSendGrid, Link  # noqa: E402
from send_fixtures import API_KEY, AS_OF, POSTS, SendSite  # noqa: E402

SECRET = "test-secret-that-is-long-enough-1234"
EDITION = "2026-W02"  # the edition of AS_OF
TITLES = [title for title, _, _ in POSTS.values()]


@dataclass
class Outcome:
    """What a case did, judged from the fake's log and the database."""

    case: str
    database: str
    readers: int
    duplicates: dict[str, int]  # address -> copies of one edition, over 1
    pair_duplicates: int  # reader-post pairs sent more than once, over all editions
    missing: set[str]  # readers who never got the edition
    undecided: set[str]  # readers the database lists as in flight (accounted for)
    error: str = ""  # what the send raised or printed, if it failed
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def silently_dropped(self) -> set[str]:
        return self.missing - self.undecided

    @property
    def ok(self) -> bool:
        return not self.duplicates and not self.pair_duplicates and not self.silently_dropped

    def summary(self) -> str:
        return (
            f"{self.case} [{self.database}]: {'PASS' if self.ok else 'FAIL'}; {self.readers} readers, "
            f"{len(self.duplicates)} got it twice ({sum(self.duplicates.values()) - len(self.duplicates)}"
            f" extra copies), {self.pair_duplicates} reader-post pairs twice, {len(self.missing)} missing"
            f" ({len(self.silently_dropped)} silently dropped, {len(self.undecided)} listed undecided or failed)"
            + (f"; error: {self.error[:300]}" if self.error else "")
            + (f"; {self.notes}" if self.notes else "")
        )


class Ctx:
    """One case's world: a site on ``db_url`` under ``root`` and a running fake SendGrid."""

    def __init__(self, root: Path, db_url: str, fake: FakeSendGrid) -> None:
        self.root = root
        self.db_url = db_url
        self.fake = fake
        self.site = SendSite(root, database={"url": db_url})
        self.config_path = root / "config.toml"
        self.timeout = 30.0
        self.emails: list[str] = []

    def write_config(self, *, timeout: float = 30.0, backend: str = "sendgrid") -> Path:
        self.timeout = timeout
        self.config_path.write_text(
            f"""categories = ["US", "Europe", "Asia", "Markets", "Technology", "Climate"]
[site]
name = "The Test Brief"
base_url = "https://brief.example.com"
postal_address = "The Test Brief, 2 Test Street, London N1 1AA, United Kingdom"
[sender]
backend = "{backend}"
from_email = "brief@example.com"
from_name = "Test Brief"
outbox = "out"
max_retries = 4
retry_base_seconds = 0.001
timeout_seconds = {timeout}
[database]
url = "{self.db_url}"
[web]
base_url = "https://brief.example.com"
[posts]
folder = "posts"
cache = ".cache"
""",
            encoding="utf-8",
        )
        return self.config_path

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SENDGRID_API_KEY": API_KEY,
            "SENDGRID_API_HOST": self.fake.url,
            "DIGEST_SECRET": SECRET,
            "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
        }

    def readers(self, n: int, seed: int = 7) -> list[str]:
        self.emails += self.site.add_many(n, seed=seed)
        return self.emails

    def cmd(self, *extra: str, as_of: str = "2026-01-09T12:00", lock_seconds: int | None = None) -> list[str]:
        """``digest send`` as a subprocess (optionally with a short lock lease, to make a lease
        run out in seconds rather than LOCK_SECONDS = 300)."""
        prelude = "import sys; from digest.cli import main"
        if lock_seconds is not None:
            prelude += (
                "; import digest.editions as d"
                f"; d.EditionLock.__init__.__kwdefaults__['seconds'] = {lock_seconds}"
            )
        return [
            sys.executable,
            "-c",
            prelude + "; sys.argv[0] = 'digest'; sys.exit(main())",
            "--config",
            str(self.config_path),
            "send",
            "--as-of",
            as_of,
            *extra,
        ]

    def start(self, *extra: str, **kw: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.cmd(*extra, **kw),
            env=self.env(),
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *extra: str, timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.cmd(*extra, **kw),
            env=self.env(),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def deliver(self, **kw: Any) -> Any:
        """The send in this process (the engine itself, no CLI)."""
        from digest.weekly import send as deliver

        env = {"SENDGRID_API_KEY": API_KEY, "SENDGRID_API_HOST": self.fake.url, "DIGEST_SECRET": SECRET}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            config = self.site.config
            if self.timeout != config.sender.timeout_seconds:
                from dataclasses import replace

                config = replace(config, sender=replace(config.sender, timeout_seconds=self.timeout))
            return deliver(
                config, self.site.store, as_of=datetime.fromisoformat(AS_OF), sender_name="sendgrid", **kw
            )
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def undecided(self, edition: str = EDITION) -> set[str]:
        """Readers the database lists for ``edition`` as not delivered: undecided (in flight) or failed
        with a reason (rows, and batches not yet written out). Both are shown by `digest status`
        and a rerun retries the failed ones, so neither is silently dropped; a reader with no row
        at all is (e.g. a 429 storm that outlasts `max_retries` fails its batch, visibly)."""
        ids: set[int] = set()
        with self.site.store.reading() as c:
            ids.update(
                r[0]
                for r in c.exec_driver_sql(
                    "SELECT subscriber_id FROM deliveries WHERE edition_id = %s "
                    "AND state IN ('in_flight', 'undecided', 'failed')"
                    if self.site.store.dialect == "postgresql"
                    else "SELECT subscriber_id FROM deliveries WHERE edition_id = ? "
                    "AND state IN ('in_flight', 'undecided', 'failed')",
                    (edition,),
                )
            )
            for (pending,) in c.exec_driver_sql(
                "SELECT pending_ids FROM batches WHERE state IN ('in_flight', 'undecided', 'failed') "
                "AND pending_ids IS NOT NULL"
            ):
                ids.update(int(i) for i in json.loads(pending))
            emails: dict[int, str] = dict(c.exec_driver_sql("SELECT id, email FROM subscribers").all())
        return {emails[i].lower() for i in ids if i in emails}

    def outcome(self, case: str, *, edition: str = EDITION, error: str = "", **notes: Any) -> Outcome:
        fake = self.fake
        return Outcome(
            case=case,
            database=self.site.store.dialect,
            readers=len(self.emails),
            duplicates=fake.duplicates(edition),
            pair_duplicates=pair_duplicates(fake),
            missing=fake.missing(self.emails, edition),
            undecided=self.undecided(edition),
            error=error,
            notes={"requests": fake.mail_requests(), "accepted": len(fake.accepted), **notes},
        )


def pair_duplicates(fake: FakeSendGrid) -> int:
    """Reader-post pairs sent more than once, over every edition (posts found by title)."""
    pairs: collections.Counter[tuple[str, str]] = collections.Counter()
    for entry in fake.log:
        body = fake.state.accepted[entry.request].body or {}
        html = next((c["value"] for c in body.get("content", []) if c.get("type") == "text/html"), "")
        pairs.update((entry.email.lower(), t) for t in TITLES if t in html)
    return sum(n - 1 for n in pairs.values() if n > 1)


def _finish(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    out, err = proc.communicate(timeout=timeout)
    return "" if proc.returncode == 0 else f"exit {proc.returncode}: {(err or out).strip()[-400:]}"


# -- the cases ---------------------------------------------------------------------------------
# Each takes a Ctx and returns an Outcome. Sizes are small (CI); the fault, not the size, matters.


def reset_before_every_4th(ctx: Ctx) -> Outcome:
    """Every 4th request is reset before SendGrid took it: a retry is safe."""
    ctx.readers(240)
    ctx.fake.fail_every(4, "reset_before")
    ctx.deliver()
    return ctx.outcome("reset_before_every_4th", resets=ctx.fake.state.resets)


def reset_after_every_5th(ctx: Ctx) -> Outcome:
    """Every 5th request is taken by SendGrid, then the connection is reset: the answer is lost."""
    ctx.readers(240)
    ctx.fake.fail_every(5, "reset_after")
    error = ""
    try:
        ctx.deliver()
    except Exception as exc:
        error = repr(exc)
    return ctx.outcome("reset_after_every_5th", error=error, resets=ctx.fake.state.resets)


def stall_every_5th(ctx: Ctx) -> Outcome:
    """Every 5th request is taken, and its answer comes after the client's timeout (1 s)."""
    ctx.readers(240)
    ctx.timeout = 1.0
    ctx.fake.fail_every(5, "late", seconds=1.5)
    error = ""
    try:
        ctx.deliver()
    except Exception as exc:
        error = repr(exc)
    return ctx.outcome("stall_every_5th", error=error, stalled=ctx.fake.state.stalled)


def stall_forever_every_5th(ctx: Ctx) -> Outcome:
    """Every 5th request is taken and never answered at all (the connection just hangs)."""
    ctx.readers(240)
    ctx.timeout = 1.0
    ctx.fake.fail_every(5, "stall")
    error = ""
    try:
        ctx.deliver()
    except Exception as exc:
        error = repr(exc)
    return ctx.outcome("stall_forever_every_5th", error=error, stalled=ctx.fake.state.stalled)


@contextmanager
def serving(config: Any) -> Iterator[str]:
    """``digest serve``'s app under uvicorn in a thread; yields its webhook URL."""
    import socket
    import threading

    import uvicorn

    from digest.web.app import create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/webhooks/sendgrid"
    finally:
        server.should_exit = True
        thread.join(10)


def stall_settled_by_webhook(ctx: Ctx) -> Outcome:
    """`stall_every_5th` with the Event Webhook on: SendGrid's events for each accepted request
    reach `digest serve`, which settles the stalled (undecided) batches. Nobody twice, nobody
    missing, nothing left undecided, no human step."""
    from dataclasses import replace

    from fake_sendgrid import EventWebhook

    ctx.readers(240)
    ctx.timeout = 1.0
    hook = EventWebhook("")
    config = ctx.site.config
    ctx.site.config = replace(
        config, web=replace(config.web, sendgrid_webhook_public_key=hook.public_key_b64)
    )
    os.environ.setdefault("DIGEST_SECRET", SECRET)
    error = ""
    with serving(ctx.site.config) as url:
        hook.url = url
        ctx.fake.post_events_to(hook, ("processed", "delivered"))
        ctx.fake.fail_every(5, "late", seconds=1.5)
        try:
            ctx.deliver()
        except Exception as exc:
            error = repr(exc)
        ctx.fake.drain_events()
    out = ctx.outcome("stall_settled_by_webhook", error=error, stalled=ctx.fake.state.stalled)
    if out.undecided:  # the point of the case: settled without a human
        out.error = (out.error + f"; {len(out.undecided)} readers left undecided").lstrip("; ")
        out.missing |= out.undecided
        out.undecided = set()
    return out


def storm_429(ctx: Ctx) -> Outcome:
    """A 429 storm: every request for 2 s is refused with X-RateLimit-Reset at its end, then a
    few more single 429s: waits as told, nothing twice, nobody left out."""
    ctx.readers(240)
    ctx.fake.storm(2.0)
    ctx.fake.fail_every(7, "429", seconds=0.2)
    t0 = time.monotonic()
    ctx.deliver()
    return ctx.outcome("storm_429", seconds=round(time.monotonic() - t0, 1))


def storm_500(ctx: Ctx) -> Outcome:
    """5xx answers (not accepted) on every 3rd request: retried with backoff, each once."""
    ctx.readers(240)
    ctx.fake.fail_every(3, "503")
    ctx.deliver()
    return ctx.outcome("storm_500")


def two_runs_one_edition(ctx: Ctx) -> Outcome:
    """Two `digest send` of one edition at once over a 40 ms link: the lock lets one send."""
    ctx.readers(240)
    ctx.write_config()
    ctx.fake.state.link = Link(round_trip=0.04)
    a, b = ctx.start(), ctx.start()
    errors = [_finish(a), _finish(b)]
    rerun = ctx.run()
    return ctx.outcome(
        "two_runs_one_edition", error=rerun.stderr[-300:] if rerun.returncode else "", exits=errors
    )


def two_editions_in_turn(ctx: Ctx) -> Outcome:
    """Edition W02 (as of 9 Jan), then the next (as of 12 Jan): no reader gets a post twice."""
    ctx.readers(240)
    ctx.write_config()
    first = ctx.run()
    second = ctx.run(as_of="2026-01-12T12:00")
    error = "; ".join(p.stderr[-300:] for p in (first, second) if p.returncode)
    return ctx.outcome("two_editions_in_turn", error=error)


def two_editions_at_once(ctx: Ctx) -> Outcome:
    """The same two editions started together over a 40 ms link (issue 12: 15,608 pairs twice)."""
    ctx.readers(240)
    ctx.write_config()
    ctx.fake.state.link = Link(round_trip=0.04)
    a, b = ctx.start(), ctx.start(as_of="2026-01-12T12:00")
    error = "; ".join(e for e in (_finish(a), _finish(b)) if e)
    out = ctx.outcome("two_editions_at_once", error=error)
    # Editions go one at a time, in either order: when the later one (whose window holds all
    # four posts) went first, the earlier one has nothing new for its readers. Missing means
    # in neither edition; no reader-post pair twice is the point.
    out.missing &= ctx.fake.missing(ctx.emails, "2026-W03")
    out.notes["editions"] = sorted({e.edition or "" for e in ctx.fake.log})
    return out


def lease_loss(ctx: Ctx) -> Outcome:
    """A legal 429 wait (X-RateLimit-Reset 15 s ahead) outlives a 3 s lease; a second run starts
    after the lease ran out and sends; the first then wakes and posts what it had queued."""
    ctx.readers(240)
    ctx.write_config()
    ctx.fake.fail_next("ok", times=2)
    ctx.fake.fail_next("429", seconds=15)
    first = ctx.start(lock_seconds=3)
    deadline = time.monotonic() + 30
    while ctx.fake.mail_requests() < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(3.5)  # the first run's lease has run out; it is still waiting out the 429
    second = ctx.run(lock_seconds=3)
    first_exit = _finish(first)
    return ctx.outcome(
        "lease_loss",
        first=first_exit[:200] or "exit 0",
        second=f"exit {second.returncode}: {second.stderr.strip()[-200:]}",
    )


def kill9_random(ctx: Ctx, seed: int = 1) -> Outcome:
    """`digest send` killed with SIGKILL at a random moment (seeded) over a 30 ms link, then run
    again: no one twice; anyone missing is listed undecided (at most one batch per kill)."""
    rng = random.Random(seed)
    ctx.readers(240)
    ctx.write_config()
    ctx.fake.state.link = Link(round_trip=0.03)
    proc = ctx.start()
    after = rng.randint(1, 30)
    extra = rng.uniform(0, 0.06)
    deadline = time.monotonic() + 60
    while len(ctx.fake.accepted) < after and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(extra)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    rerun = ctx.run()
    out = ctx.outcome(
        f"kill9_random[{seed}]",
        error=rerun.stderr[-300:] if rerun.returncode else "",
        killed_after_accepted=after,
        killed=killed,
    )
    return out


def casefold_pair(ctx: Ctx) -> Outcome:
    """`strasse@x.example` and `straße@x.example` are both readers (issue 12: 0 of 5,002 sent)."""
    ctx.readers(60)
    for email in ("strasse@x.example", "straße@x.example"):
        ctx.site.add(email, ["US", "Europe"])
        ctx.emails.append(email)
    for email in ("anna@x.example", "zoe@x.example"):  # same category set, around them
        ctx.site.add(email, ["US", "Europe"])
        ctx.emails.append(email)
    error = ""
    try:
        ctx.deliver()
    except Exception as exc:
        error = repr(exc)
    out = ctx.outcome("casefold_pair", error=error)
    # one reader rule may merge the pair into one reader: then one copy to one of them is right
    pair = {"strasse@x.example", "straße@x.example"}
    if len(pair - out.missing) == 1:
        out.missing -= pair
    return out


def categories_change_mid_send(ctx: Ctx) -> Outcome:
    """Readers act while a send streams (a click on "preferences" in last week's email): one
    moves to a category set the stream has passed, one to a set still ahead, and a new reader
    confirms into a passed set. The stream reads five readers a query here (10,000 in a real
    send), so each change lands between two of its pages. Each reader gets the edition once."""
    from digest import subscribers as subs

    ctx.readers(60)
    store, config = ctx.site.store, ctx.site.config
    order = list(subs.iter_send_rows(store))  # (id, email, name, category set), as the send reads
    first, last = order[0], order[-1]
    cats_of = {s.email: list(s.categories) for s in subs.iter_subscribers(store)}
    original = subs.iter_send_rows
    changed: list[str] = []

    def in_small_pages(store: Any, **kw: Any) -> Iterator[Any]:
        kw["page"] = 5
        for i, row in enumerate(original(store, **kw)):
            yield row
            if i == 9 and not changed:  # two pages in
                subs.set_categories(store, config, first[1], cats_of[last[1]], source="web")
                subs.set_categories(store, config, last[1], cats_of[first[1]], source="web")
                ctx.site.add("latecomer@example.org", cats_of[first[1]])
                changed.extend([first[1], last[1], "latecomer@example.org"])

    subs.iter_send_rows = in_small_pages  # type: ignore[assignment]
    error = ""
    try:
        ctx.deliver()
    except Exception as exc:
        error = repr(exc)
    finally:
        subs.iter_send_rows = original  # type: ignore[assignment]
    ctx.emails.append("latecomer@example.org")
    return ctx.outcome("categories_change_mid_send", error=error, changed=len(changed))


def non_ascii_address(ctx: Ctx) -> Outcome:
    """`jöhn@example.com` (accepted by import and the form) among ordinary readers, via SendGrid."""
    ctx.readers(60)
    ctx.site.add("jöhn@example.com", ["US"])
    ctx.emails.append("jöhn@example.com")
    error = ""
    try:
        ctx.deliver()
    except Exception as exc:
        error = repr(exc)
    return ctx.outcome("non_ascii_address", error=error)


def non_ascii_address_outbox(ctx: Ctx) -> Outcome:
    """`jöhn@example.com` through the outbox backend (issue 12: NonASCIILocalPartDefect stops the
    run; SMTP builds the same MIME). Judged from the .eml files written, not the fake."""
    from email import message_from_binary_file, policy

    from digest.weekly import send as deliver

    ctx.readers(60)
    ctx.site.add("jöhn@example.com", ["US"])
    ctx.emails.append("jöhn@example.com")
    folder = ctx.root / "outbox"
    error = ""
    os.environ["DIGEST_SECRET"] = SECRET
    try:
        deliver(
            ctx.site.config,
            ctx.site.store,
            as_of=datetime.fromisoformat(AS_OF),
            sender_name="outbox",
            outbox=folder,
        )
    except Exception as exc:
        error = repr(exc)
    copies: collections.Counter[str] = collections.Counter()
    for path in folder.rglob("*.eml") if folder.exists() else ():
        with path.open("rb") as f:
            copies[str(message_from_binary_file(f, policy=policy.default)["To"]).lower()] += 1
    return Outcome(
        case="non_ascii_address_outbox",
        database=ctx.site.store.dialect,
        readers=len(ctx.emails),
        duplicates={e: n for e, n in copies.items() if n > 1},
        pair_duplicates=0,
        missing={e for e in ctx.emails if not any(e.lower() in to for to in copies)},
        undecided=ctx.undecided(),
        error=error,
        notes={"files": sum(copies.values())},
    )


CASES: dict[str, Callable[[Ctx], Outcome]] = {
    "reset_before_every_4th": reset_before_every_4th,
    "reset_after_every_5th": reset_after_every_5th,
    "stall_every_5th": stall_every_5th,
    "stall_forever_every_5th": stall_forever_every_5th,
    "stall_settled_by_webhook": stall_settled_by_webhook,
    "storm_429": storm_429,
    "storm_500": storm_500,
    "two_runs_one_edition": two_runs_one_edition,
    "two_editions_in_turn": two_editions_in_turn,
    "two_editions_at_once": two_editions_at_once,
    "lease_loss": lease_loss,
    "kill9_random_1": lambda ctx: kill9_random(ctx, 1),
    "kill9_random_2": lambda ctx: kill9_random(ctx, 2),
    "kill9_random_3": lambda ctx: kill9_random(ctx, 3),
    "casefold_pair": casefold_pair,
    "non_ascii_address": non_ascii_address,
    "non_ascii_address_outbox": non_ascii_address_outbox,
    "categories_change_mid_send": categories_change_mid_send,
}

# What passes on today's code (tests/test_fault_matrix.py runs these in CI). The rest are in
# tests/FAULT_MATRIX_TODO.md: move a name here when the fix lands.
PASSING = (
    "reset_before_every_4th",
    "reset_after_every_5th",
    "stall_every_5th",
    "stall_forever_every_5th",
    "stall_settled_by_webhook",
    "lease_loss",
    "two_editions_at_once",
    "storm_429",
    "storm_500",
    "two_runs_one_edition",
    "two_editions_in_turn",
    "kill9_random_1",
    "kill9_random_2",
    "kill9_random_3",
    "non_ascii_address",
    "non_ascii_address_outbox",
    "casefold_pair",
    "categories_change_mid_send",
)


@contextmanager
def world(root: Path, db_url: str) -> Iterator[Ctx]:
    with FakeSendGrid(api_key=API_KEY) as fake:
        ctx = Ctx(root, db_url, fake)
        try:
            yield ctx
        finally:
            ctx.site.store.dispose()


@contextmanager
def database(kind: str) -> Iterator[str]:
    """A URL to an empty database: a SQLite file, or a throwaway PostgreSQL schema."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="fault-db-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'digest.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = os.environ["DIGEST_TEST_POSTGRES_URL"]
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield (
            make_url(base)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def run_case(name: str, db: str) -> Outcome:
    with (
        tempfile.TemporaryDirectory(prefix="fault-") as tmp,
        database(db) as url,
        world(Path(tmp), url) as ctx,
    ):
        return CASES[name](ctx)


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("cases", nargs="*", help=f"any of: {', '.join(CASES)}")
    parser.add_argument("--all", action="store_true")
    parser.add_argument("--db", default="sqlite", help="sqlite, postgresql or both")
    args = parser.parse_args()
    names = list(CASES) if args.all else args.cases
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    failed = 0
    for name in names:
        for db in dbs:
            out = run_case(name, db)
            failed += not out.ok
            print(out.summary(), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
