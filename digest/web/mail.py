"""The two emails the subscribe form sends: "confirm your subscription" and "you're already subscribed"."""

from __future__ import annotations

from jinja2 import Environment

from digest.config import Config
from digest.links import LinkMaker
from digest.model import Subscriber
from digest.send.base import OutgoingMessage


def subscribe_message(
    config: Config, env: Environment, links: LinkMaker, subscriber: Subscriber, kind: str, topics: list[str]
) -> OutgoingMessage:
    """The ``kind`` ("confirm" or "already") email to ``subscriber``, rendered from the web templates."""
    ctx: dict[str, object] = {
        "site_name": config.site.name,
        "lang": config.site.language or "en",
        "postal_address": config.site.postal_address,
        "email": subscriber.email,
        "topics": topics,
        "confirm_hours": config.web.confirm_hours,
    }
    if kind == "confirm":
        ctx["confirm_url"] = links.confirm_url(subscriber.email)
        subject = f"Confirm your subscription to {config.site.name}"
    else:
        ctx["preferences_url"] = links.preferences_url(subscriber.email)
        subject = f"You're already subscribed to {config.site.name}"
    return OutgoingMessage(
        to=subscriber.email,
        subject=subject,
        html=env.get_template(f"email_{kind}.html").render(ctx),
        text=env.get_template(f"email_{kind}.txt").render(ctx),
        headers={"Auto-Submitted": "auto-generated"},
        categories=(f"digest-{kind}",),
    )
