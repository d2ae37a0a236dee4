"""End to end: `digest run` twice in a row, as real processes, against the fake SendGrid server.

The first run sends the edition to every subscriber; the second finds it already sent and makes
no request at all.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fake_sendgrid import FakeSendGrid

from digest import editions
from digest.config import load_config
from digest.store import open_store
from digest.subscribers import subscribe

API_KEY = "SG.test-key-not-secret"
LONDON = ZoneInfo("Europe/London")
CONFIG = """\
[site]
name = "The Brief"
base_url = "https://brief.example.com"
timezone = "Europe/London"
postal_address = "The Brief, 1 Example Street, London N1 1AA"
[posts]
folder = "posts"
[sender]
backend = "sendgrid"
from_email = "brief@example.com"
sending_domain = "example.com"
retry_base_seconds = 0.001
[web]
base_url = "https://brief.example.com"
[database]
url = "sqlite:///digest.db"
[schedule]
cron = "0 7 * * 1"
[[categories]]
name = "News"
[[categories]]
name = "Tech"
"""


def write_post(folder: Path, name: str, category: str, when: datetime) -> None:
    (folder / f"{name}.md").write_text(
        f'---\ntitle: "{name.title()} news"\ncategories: [{category}]\ndate: {when:%Y-%m-%d %H:%M}\n---\n\n'
        f"{name.title()} happened this week, and this is the lead paragraph about it.\n",
        encoding="utf-8",
    )


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "posts").mkdir(parents=True)
    (root / "config.toml").write_text(CONFIG, encoding="utf-8")
    # Posts from the last few days, so the first edition's window (7 days to now) holds them.
    now = datetime.now(LONDON)
    write_post(root / "posts", "harbour", "News", now - timedelta(days=2))
    write_post(root / "posts", "compiler", "Tech", now - timedelta(days=1))
    config = load_config(root / "config.toml")
    store = open_store(config)
    try:
        subscribe(store, config, "ann@example.org", ["News"], confirmed=True)
        subscribe(store, config, "bob@example.org", ["Tech"], confirmed=True)
        subscribe(store, config, "cat@example.org", ["News", "Tech"], confirmed=True)
    finally:
        store.dispose()
    return root


def digest_run(site: Path, server: FakeSendGrid) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "SENDGRID_"))}
    env.update(
        SENDGRID_API_KEY=API_KEY,
        SENDGRID_API_HOST=server.url,
        DIGEST_SECRET="test-secret-that-is-long-enough-1234",
    )
    return subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(site / "config.toml"), "run"],
        cwd=site,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_digest_run_twice_sends_one_edition(site: Path) -> None:
    with FakeSendGrid(api_key=API_KEY) as server:
        first = digest_run(site, server)
        assert first.returncode == 0, first.stdout + first.stderr
        requests_after_first = server.mail_requests()
        delivered = server.delivered()
        assert sorted(delivered) == ["ann@example.org", "bob@example.org", "cat@example.org"]
        assert set(delivered.values()) == {1}

        second = digest_run(site, server)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "already went out" in second.stdout
        assert server.mail_requests() == requests_after_first
        assert server.delivered() == delivered

    config = load_config(site / "config.toml")
    store = open_store(config)
    try:
        [record] = editions.edition_records(store)
    finally:
        store.dispose()
    assert record.status == "sent"
    assert record.post_ids == {"harbour.md", "compiler.md"}
    assert f"Edition {record.id} (2 post(s)): 3 sent in " in first.stdout
