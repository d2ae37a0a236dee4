"""Reading the reader-facing forms: every field checked, every problem said in the reader's words.

Nothing here touches the store, so the subscribe answer depends only on what was typed, never
on whether the address is known (digest.web.jobs does the rest after the answer).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import FormData

from digest import subscribers as subs
from digest.config import Config, category_key
from digest.errors import StoreError

MAX_EMAIL_CHARS = 254  # RFC 5321 path limit
MAX_NAME_CHARS = 100


def text_field(form: FormData | Mapping[str, Any], key: str) -> str:
    """A form field as text; a file upload or a missing field is empty."""
    value = form.get(key)
    return value if isinstance(value, str) else ""


def address_problem(message: str) -> str:
    """The store's reason without its echo of the input (the field already shows that)."""
    _, sep, reason = message.partition(" is not a valid email address: ")
    return f"That is not a valid email address: {reason[:1].lower()}{reason[1:]}" if sep else message


def has_control(text: str) -> bool:
    """CR, LF, NUL, tabs, the Unicode line/paragraph separators, lone surrogates: never in a field."""
    return any(unicodedata.category(ch) in ("Cc", "Zl", "Zp", "Cs") for ch in text)


def categories_from_form(config: Config, values: list[str]) -> tuple[list[str], str]:
    """The config's display names for the ticked boxes, or an error saying what is wrong."""
    names: list[str] = []
    for value in values:
        cat = config.find_category(value) if len(value) <= 200 else None
        if cat is None:
            shown = value if len(value) <= 40 else value[:40] + "…"
            return [], f"There is no topic called “{shown}”. Pick from the list."
        if cat.name not in names:
            names.append(cat.name)
    if config.categories and not names:
        return [], "Pick at least one topic."
    return names, ""


@dataclass
class SubscribeForm:
    """What the subscribe form said: the clean values, or the errors to show beside the fields."""

    email: str = ""
    name: str = ""
    names: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    shown: dict[str, Any] = field(default_factory=dict)  # what to fill the form with again


def read_subscribe_form(config: Config, form: FormData) -> SubscribeForm:
    """Check every field of a subscribe POST; the address in its stored form when it is good."""
    raw_email = text_field(form, "email").strip()
    name = text_field(form, "name").strip()
    values = [v.strip() for v in form.getlist("category") if isinstance(v, str)]
    result = SubscribeForm(name=name)
    errors = result.errors
    if not raw_email:
        errors["email"] = "Enter your email address."
    elif len(raw_email) > MAX_EMAIL_CHARS:
        errors["email"] = (
            f"That address is too long: an email address has at most {MAX_EMAIL_CHARS} characters."
        )
    elif has_control(raw_email):
        errors["email"] = "An email address can't contain line breaks or control characters."
    else:
        try:
            result.email = subs.normalise_email(raw_email)
        except StoreError as exc:
            errors["email"] = address_problem(str(exc))
    if len(name) > MAX_NAME_CHARS:
        errors["name"] = f"Your name can be at most {MAX_NAME_CHARS} characters."
    elif has_control(name):
        errors["name"] = "Your name can't contain line breaks or control characters."
    else:
        try:
            result.name = subs.clean_name(name)
        except StoreError as exc:
            errors["name"] = str(exc)
    result.names, problem = categories_from_form(config, values)
    if problem:
        errors["category"] = problem
    result.shown = {
        "email": raw_email[:MAX_EMAIL_CHARS],
        "name": "" if "name" in errors else name,
        "chosen": {category_key(v) for v in values if len(v) <= 200},
    }
    return result
