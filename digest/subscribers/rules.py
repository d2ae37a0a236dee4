"""Input checks shared by every door into the subscriber list: addresses, names, sources, categories.

Input is treated as hostile: addresses follow the one rule in ``digest.addresses``, names lose
control and bidi characters, and categories must be ones config.toml defines. Every refusal is
a ``StoreError`` that names the address, category or value and says what to do.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from digest import addresses
from digest.config import Config
from digest.errors import StoreError
from digest.store import SUBSCRIBER_STATUSES

EMAIL_MAX = addresses.EMAIL_MAX
LOCAL_PART_MAX = addresses.LOCAL_PART_MAX
NAME_MAX = 100
SOURCE_MAX = 32
REASON_MAX = 500
STATUSES = SUBSCRIBER_STATUSES
ENDED = ("unsubscribed", "bounced", "complained")
_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")

_show = addresses.show


def normalise_email(raw: str) -> str:
    """The address as stored (see ``digest.addresses.normalise``); StoreError saying why not."""
    return addresses.normalise(raw)


def email_key(address: str) -> str:
    """What uniqueness and look-ups use (see ``digest.addresses.key``)."""
    return addresses.key(address)


def clean_name(raw: str | None) -> str:
    """A display name safe for headers and pages: no control, line-break or bidi characters."""
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise StoreError(f"name {_show(raw)} is not text.")
    out: list[str] = []
    for ch in raw:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Zl", "Zp"):
            out.append(" ")
        elif cat in ("Cs", "Co", "Cn") or ch in _BIDI_CONTROLS:
            continue
        else:
            out.append(ch)
    name = " ".join("".join(out).split())
    if len(name) > NAME_MAX:
        raise StoreError(
            f"name {_show(name)} is {len(name)} characters long; the limit is {NAME_MAX}. Shorten it."
        )
    return name


def check_source(source: str) -> str:
    if not isinstance(source, str) or not source or len(source) > SOURCE_MAX:
        raise StoreError(f"source {_show(source)} must be a short word such as 'cli' or 'web'.")
    return source


def check_reason(reason: str) -> str:
    """Why an admin overrides a reader's own choice: required, one line, kept in the consent log."""
    text = " ".join((reason or "").split())
    if not text:
        raise StoreError(
            "--force needs --reason saying how the reader asked to be subscribed again "
            '(e.g. --reason "asked by email on 2026-01-05"); it is kept in their consent log.'
        )
    if len(text) > REASON_MAX:
        raise StoreError(f"the reason is {len(text)} characters long; keep it under {REASON_MAX}.")
    return text


def category_list(config: Config) -> str:
    return ", ".join(c.name for c in config.categories)


def require_categories(config: Config) -> None:
    if not config.categories:
        where = config.source or "config.toml"
        raise StoreError(
            f"{where} defines no categories, so readers have nothing to choose; add some first, "
            'e.g.\n\n[[categories]]\nname = "News"\ndescription = "What happened this week"\n'
        )


def split_categories(config: Config, text: str) -> list[str]:
    """Split 'A,B', 'A;B', 'A|B' or 'A B' into names; a name with spaces that config knows stays whole."""
    names: list[str] = []
    for token in re.split(r"[,;|]", text or ""):
        token = token.strip()
        if not token:
            continue
        if config.find_category(token) is None and len(token.split()) > 1:
            parts = token.split()
            if all(config.find_category(p) is not None for p in parts):
                names.extend(parts)
                continue
        names.append(token)
    return names


def resolve_categories(config: Config, categories: Iterable[str] | str) -> tuple[str, ...]:
    """Category names (any case/spacing) to sorted keys; unknown or none at all is refused."""
    require_categories(config)
    if isinstance(categories, str):
        categories = split_categories(config, categories)
    keys: set[str] = set()
    for name in categories:
        if not isinstance(name, str):
            raise StoreError(f"category {_show(name)} is not text.")
        if not name.strip():
            continue
        found = config.find_category(name)
        if found is None:
            raise StoreError(
                f"unknown category {_show(name.strip())}; the categories in config.toml are: "
                f"{category_list(config)}."
            )
        keys.add(found.key)
    if not keys:
        raise StoreError(f"choose at least one category: {category_list(config)}.")
    return tuple(sorted(keys))


def category_set_label(keys: Iterable[str]) -> str:
    """The canonical form of a set of category keys: sorted, joined with ", " ("" for none).

    What ``subscribers.category_set`` holds and ``deliveries.category_set`` names for a plain
    email of that set, so a send can group readers by the column without re-reading their keys.
    """
    return ", ".join(sorted(set(keys)))


def category_set_keys(label: str) -> tuple[str, ...]:
    """``category_set_label`` undone: the sorted keys of a stored category set."""
    return tuple(label.split(", ")) if label else ()
