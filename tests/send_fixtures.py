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


def make_config(root: Path, **sections: dict[str, Any]) -> Config:
    """A config under ``root`` with fast retries, a SQLite file and six categories."""
    data: dict[str, Any] = {
        "site": {"name": "The Test Brief", "base_url": "https://brief.example.com"},
        "sender": {"from_email": "brief@example.com", "from_name": "Test Brief", "max_retries": 4},
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
    """Backoff in milliseconds (the sender reads $DIGEST_RETRY_BASE_SECONDS)."""
    monkeypatch.setenv("DIGEST_RETRY_BASE_SECONDS", "0.001")
    monkeypatch.setenv("DIGEST_SECRET", "test-secret-that-is-long-enough-1234")


@pytest.fixture
def fake_sendgrid(monkeypatch: pytest.MonkeyPatch, fast_retries: None) -> Iterator[FakeSendGrid]:
    with FakeSendGrid(api_key=API_KEY) as server:
        monkeypatch.setenv("SENDGRID_API_KEY", API_KEY)
        monkeypatch.setenv("SENDGRID_API_HOST", server.url)
        yield server


__all__ = ["API_KEY", "fake_sendgrid", "fast_retries", "make_config"]
