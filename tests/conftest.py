"""Shared fixtures. Keep each one small and say who uses it; append, do not rewrite.

Database fixtures (store side): ``db_url`` and ``store`` run a test once on SQLite (a file in
tmp_path) and once on PostgreSQL (a fresh schema per test on $DIGEST_TEST_POSTGRES_URL, or the
local default below). PostgreSQL is skipped, with the reason, only when no server answers;
with DIGEST_TEST_REQUIRE_POSTGRES=1 (CI) that is a failure instead.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from digest.config import Config, config_from_dict

POSTGRES_ENV = "DIGEST_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "DIGEST_TEST_REQUIRE_POSTGRES"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://digest:digest@127.0.0.1:5432/digest_test"

TEST_CATEGORIES = [
    {"name": "News", "description": "What happened this week"},
    {"name": "Data Science", "description": "Notebooks, models and charts"},
    {"name": "Tech", "description": "Tools and how-tos"},
]


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Config]:
    """Build a validated Config rooted in tmp_path: ``make_config(categories=[...], site={...})``.

    A section given as a dict is merged into the defaults; anything else replaces it.
    """

    def make(root: Path | None = None, **overrides: Any) -> Config:
        data: dict[str, Any] = {"categories": list(TEST_CATEGORIES)}
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return config_from_dict(data, root=root or tmp_path)

    return make


@functools.cache
def _postgres_problem(url: str) -> str | None:
    """Why the server at url cannot be used, or None; asked once per test run."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return (
            f"no PostgreSQL server at {POSTGRES_ENV}={make_url(url).render_as_string(hide_password=True)} "
            f"({type(exc).__name__}: {first[0] if first else exc!r}); run scripts/test.sh or set the variable"
        )
    return None


def _postgres_or_skip() -> str:
    """The server URL to test on, or skip/fail saying why there is none."""
    url = os.environ.get(POSTGRES_ENV) or DEFAULT_POSTGRES_URL
    required = os.environ.get(REQUIRE_POSTGRES_ENV) == "1"
    reason = _postgres_problem(url)
    if reason:
        if required:
            pytest.fail(f"{REQUIRE_POSTGRES_ENV}=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database: a SQLite file, or a throwaway PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'digest.db'}"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = _postgres_or_skip()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def store(db_url: str, make_config: Callable[..., Config]) -> Iterator[Any]:
    """An open, migrated digest.store.Store on each database (see db_url)."""
    from digest.store import open_store

    opened = open_store(make_config(), url=db_url)
    try:
        yield opened
    finally:
        opened.dispose()


# -- preview (tests/test_preview_server.py, tests/test_cli_preview_serve.py) -------------------

PREVIEW_CONFIG = """\
[site]
name = "Test Brief"
base_url = "https://brief.test"
timezone = "Europe/London"
postal_address = "Test Brief, 1 Test Street, London N1 1AA, United Kingdom"

[posts]
folder = "posts"

[edition]
output = "build"
templates = "templates"

[sender]
backend = "outbox"
from_email = "brief@brief.test"
from_name = "Test Brief"
sending_domain = "brief.test"
outbox = "build/outbox"

[database]
url = "sqlite:///digest.db"

[[categories]]
name = "News"

[[categories]]
name = "Tech"

[[categories]]
name = "Data Science"
"""

PREVIEW_POSTS = {
    "2026-01-05-harbour.md": ("Harbour reopens after the storm", "News", "2026-01-05 09:00"),
    "2026-01-06-compiler.md": ("A faster compiler lands", "Tech", "2026-01-06 10:30"),
    "2026-01-07-notebooks.md": ("Notebooks that explain themselves", "Data Science", "2026-01-07 14:00"),
    "2026-01-08-council.md": ("Council passes the budget", "News", "2026-01-08 18:15"),
}


class PreviewSite:
    """A tmp site for the preview: config.toml, a posts folder, an (empty) templates folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config_path = root / "config.toml"
        self.posts = root / "posts"
        self.templates = root / "templates"
        self.out = root / "build"
        self.posts.mkdir(parents=True, exist_ok=True)
        self.templates.mkdir(exist_ok=True)
        self.config_path.write_text(PREVIEW_CONFIG, encoding="utf-8")
        for name, (title, category, date) in PREVIEW_POSTS.items():
            self.write_post(name, title, category, date)

    def write_post(self, name: str, title: str, category: str, date: str, body: str = "") -> Path:
        body = body or (
            f"{title} is the first paragraph of this post, long enough to be a lead.\n\n"
            "A second paragraph that the digest leaves out.\n"
        )
        path = self.posts / name
        path.write_text(
            f'---\ntitle: "{title}"\ncategories: [{category}]\ndate: {date}\n---\n\n{body}',
            encoding="utf-8",
        )
        return path

    def config(self) -> Config:
        from digest.config import load_config

        return load_config(self.config_path)


@pytest.fixture
def preview_site(tmp_path: Path) -> PreviewSite:
    """A small site of four posts (News x2, Tech, Data Science) in the week to 2026-01-09."""
    return PreviewSite(tmp_path / "site")


class PreviewServers:
    """Starts `digest preview --serve` as real processes on free ports; stops them all at the end."""

    AS_OF = "2026-01-09"

    def __init__(self, site: PreviewSite) -> None:
        self.site = site
        self.started: list[Any] = []

    def start(self, *extra: str, as_of: str | None = AS_OF) -> tuple[Any, str]:
        import socket
        import subprocess
        import sys
        import time

        import httpx

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        args = [sys.executable, "-m", "digest", "--config", str(self.site.config_path), "preview", "--serve"]
        args += ["--host", "127.0.0.1", "--port", str(port), *(["--as-of", as_of] if as_of else []), *extra]
        env = {**os.environ, "DIGEST_SECRET": "preview-test-secret", "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            args, cwd=self.site.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.started.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                output = proc.stdout.read().decode() if proc.stdout else ""
                raise AssertionError(f"preview server exited with {proc.returncode}:\n{output}")
            try:
                if httpx.get(url + "/state", timeout=1).status_code == 200:
                    return proc, url
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("preview server did not answer within 20 s")

    @staticmethod
    def stop(proc: Any) -> int:
        """Ctrl+C, as a person would; the server must be gone within 10 s."""
        import signal
        import subprocess

        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise AssertionError("preview server ignored Ctrl+C for 10 s") from None
        return int(proc.returncode)


@pytest.fixture
def preview_servers(preview_site: PreviewSite) -> Iterator[PreviewServers]:
    """``preview_servers.start()`` -> (process, base URL) of `digest preview --serve` on preview_site."""
    servers = PreviewServers(preview_site)
    try:
        yield servers
    finally:
        for proc in servers.started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
