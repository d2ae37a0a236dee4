"""Fixtures for the send tests: a fake SendGrid server, an SMTP server on loopback, configs.

Kept apart from conftest.py (which other areas own); test modules import what they use.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_sendgrid import FakeSendGrid

from digest.config import Config, config_from_dict

API_KEY = "SG.test-key-not-secret"


def send_config(root: Path, **sections: dict[str, Any]) -> Config:
    """A config under ``root`` with fast retries, a SQLite file and six categories."""
    data: dict[str, Any] = {
        "site": {"name": "The Test Brief", "base_url": "https://brief.example.com"},
        "sender": {
            "from_email": "brief@example.com",
            "from_name": "Test Brief",
            "max_retries": 4,
            "retry_base_seconds": 0.001,  # retry storms finish in milliseconds
        },
        "database": {"url": f"sqlite:///{root / 'digest.db'}"},
        "web": {"base_url": "https://brief.example.com"},
        "posts": {"folder": str(root / "posts"), "cache": str(root / ".cache")},
        "categories": ["US", "Europe", "Asia", "Markets", "Technology", "Climate"],
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return config_from_dict(data, root=root)


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test secret (backoff is ``sender.retry_base_seconds`` in ``send_config``)."""
    monkeypatch.setenv("DIGEST_SECRET", "test-secret-that-is-long-enough-1234")


@pytest.fixture
def fake_sendgrid(monkeypatch: pytest.MonkeyPatch, fast_retries: None) -> Iterator[FakeSendGrid]:
    with FakeSendGrid(api_key=API_KEY) as server:
        monkeypatch.setenv("SENDGRID_API_KEY", API_KEY)
        monkeypatch.setenv("SENDGRID_API_HOST", server.url)
        yield server


# -- a small site with posts and subscribers -------------------------------------------------

AS_OF = "2026-01-09T12:00:00+00:00"  # the window is the 7 days before: ISO week 2026-W02
POSTS = {
    "us-budget.md": ("Budget talks stall", "US", "2026-01-05 09:00"),
    "eu-rates.md": ("ECB holds rates", "Europe, Markets", "2026-01-06 10:30"),
    "asia-chips.md": ("A new chip plant", "Asia, Technology", "2026-01-07 14:00"),
    "climate-grid.md": ("Grid storage doubles", "Climate", "2026-01-08 18:15"),
    "old.md": ("Last week's news", "US", "2025-12-20 08:00"),
}


def write_posts(folder: Path, posts: dict[str, tuple[str, str, str]] | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (title, cats, date) in (posts or POSTS).items():
        (folder / name).write_text(
            f'---\ntitle: "{title}"\ncategories: [{cats}]\ndate: {date}\n---\n\n'
            f"{title}: the first paragraph, long enough to be a lead for the digest.\n\nMore.\n",
            encoding="utf-8",
        )


def config_toml(root: Path, *, sender: str = "outbox", extra: str = "") -> Path:
    """The same config as send_config, as a config.toml file (for the CLI in a subprocess)."""
    path = root / "config.toml"
    path.write_text(
        f"""categories = ["US", "Europe", "Asia", "Markets", "Technology", "Climate"]
[site]
name = "The Test Brief"
base_url = "https://brief.example.com"
postal_address = "The Test Brief, 2 Test Street, London N1 1AA, United Kingdom"
[sender]
backend = "{sender}"
from_email = "brief@example.com"
from_name = "Test Brief"
outbox = "out"
max_retries = 4
retry_base_seconds = 0.001
[database]
url = "sqlite:///{root / "digest.db"}"
[web]
base_url = "https://brief.example.com"
[posts]
folder = "posts"
cache = ".cache"
{extra}""",
        encoding="utf-8",
    )
    return path


class SendSite:
    """tmp config + posts + migrated SQLite store; ``add(email, cats)`` makes an active reader."""

    def __init__(self, root: Path, **sections: dict[str, Any]) -> None:
        from digest.store import open_store

        self.root = root
        write_posts(root / "posts")
        self.config = send_config(root, **sections)
        self.store = open_store(self.config)

    def add(self, email: str, categories: str | list[str]) -> Any:
        from digest import subscribers

        sub, _ = subscribers.subscribe(
            self.store, self.config, email, categories, source="cli", confirmed=True
        )
        return sub

    def add_many(self, n: int, *, seed: int = 1) -> list[str]:
        import random

        rng = random.Random(seed)
        names = [c.name for c in self.config.categories]
        emails = []
        for i in range(n):
            email = f"reader{i:05d}@example.org"
            self.add(email, rng.sample(names, rng.randint(1, 3)))
            emails.append(email)
        return emails

    def add_bulk(self, n: int, categories: list[str], *, start: int = 0, prefix: str = "bulk") -> list[str]:
        """``n`` active readers of one category set, inserted in one statement each table (fast)."""
        from digest import subscribers
        from digest.config import category_key
        from digest.store import subscriber_categories, utcnow
        from digest.store import subscribers as table

        keys = sorted({category_key(c) for c in categories})
        now = utcnow()
        emails = [f"{prefix}{i:06d}@example.org" for i in range(start, start + n)]
        with self.store.session() as s:
            s.execute(
                table.insert(),
                [
                    {"email": e, "email_key": e, "name": "", "status": "active", "created_at": now,
                     "updated_at": now, "confirmed_at": now, "category_set": subscribers.category_set_label(keys)}
                    for e in emails
                ],
            )  # fmt: skip
            ids = s.execute(
                table.select().with_only_columns(table.c.id).where(table.c.email.in_(emails))
            ).scalars()
            s.execute(
                subscriber_categories.insert(),
                [{"subscriber_id": sid, "category_key": k} for sid in ids for k in keys],
            )
        return emails


@pytest.fixture
def send_site(tmp_path: Path, fast_retries: None, db_url: str) -> Iterator[SendSite]:
    """The site on each database of conftest's ``db_url``: SQLite and a real PostgreSQL."""
    site = SendSite(tmp_path, database={"url": db_url})
    yield site
    site.store.dispose()


__all__ = [
    "API_KEY",
    "AS_OF",
    "SendSite",
    "fake_sendgrid",
    "fast_retries",
    "send_config",
    "send_site",
    "write_posts",
]
