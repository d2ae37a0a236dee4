"""The web side: subscribe, double opt-in, preference centre, one-click unsubscribe (Starlette)."""

from __future__ import annotations

from digest.web.app import create_app

__all__ = ["create_app"]
