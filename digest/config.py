"""Typed configuration, loaded once from ``config.toml`` and validated with errors that name the key.

Where the file comes from, in order: ``--config``, ``$DIGEST_CONFIG``, ``./config.toml``; with none
of them the built-in defaults below are used, so ``digest preview --posts some/folder`` works
anywhere. Relative paths resolve against the folder of the config file (or the current folder).
Secrets never live here: they come from the environment (see ``Secrets``).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digest.errors import ConfigError

CONFIG_ENV = "DIGEST_CONFIG"
DATABASE_ENV = "DIGEST_DATABASE_URL"
SECRET_ENV = "DIGEST_SECRET"
SENDGRID_KEY_ENV = "SENDGRID_API_KEY"
SENDGRID_HOST_ENV = "SENDGRID_API_HOST"
SMTP_PASSWORD_ENV = "DIGEST_SMTP_PASSWORD"
# The templates that ship with digest: top-level templates/ in a checkout (pip install -e .).
# The email templates: in an installed wheel they are package data (digest/templates, mapped
# from the top-level templates/ by setup.py); in a checkout, the top-level folder itself.
_PACKAGED_TEMPLATES = Path(__file__).resolve().parent / "templates"
BUILTIN_TEMPLATES = (
    _PACKAGED_TEMPLATES
    if _PACKAGED_TEMPLATES.is_dir()
    else Path(__file__).resolve().parent.parent / "templates"
)


@dataclass(frozen=True)
class CategoryConfig:
    """A category that readers can pick: its display name, and a line that explains it."""

    name: str
    description: str = ""

    @property
    def key(self) -> str:
        return category_key(self.name)


@dataclass(frozen=True)
class SiteConfig:
    name: str = "The Weekly Digest"
    base_url: str = "https://example.com"
    # Jekyll's default ("date") permalink style; :categories, :year, :month, :day, :title, :slug.
    permalink: str = "/:categories/:year/:month/:day/:title.html"
    timezone: str = "UTC"
    language: str = "en"
    postal_address: str = "Example Publishing Ltd, 1 High Street, London N1 1AA, United Kingdom"
    logo_url: str = ""


@dataclass(frozen=True)
class PostsConfig:
    folder: str = "posts"
    extensions: tuple[str, ...] = (".md", ".markdown", ".mdx")
    excerpt_separator: str = "<!--more-->"
    cache: str = ".digest-cache"


@dataclass(frozen=True)
class EditionConfig:
    window_days: int = 7
    section_cap: int = 10
    lead_words: int = 70
    # A lead's first paragraph shorter than this many words is followed by the second.
    lead_min_words: int = 25
    # Jinja2 templates over ``site`` and ``edition`` (see templates/README or render.py).
    subject: str = (
        "{{ site.name }}: {{ edition.post_count }} new {{ 'post' if edition.post_count == 1 else 'posts' }}"
    )
    preheader: str = "This week: {{ edition.titles[:3] | join(' · ') }}"
    # What a subscriber with nothing new gets: "skip" (no email) or "note" (a short note).
    nothing_new: str = "skip"
    # A post back-dated into a window that already went out: "include" it next time, or "skip".
    backdated: str = "include"
    output: str = "build"
    # A folder of your own templates; empty means the ones that ship with digest (templates/).
    templates: str = ""
    clip_warning_bytes: int = 102_000
    # Per-reader fields to fill in each email, as {{ reader.<field> }} in the templates
    # (digest.send.personalize.READER_FIELDS), e.g. ["greeting"]; none by default.
    reader_fields: tuple[str, ...] = ()
    # A folder of editor's notes, one Markdown file per edition: editions/2026-W02.md.
    notes: str = "editions"


@dataclass(frozen=True)
class SenderConfig:
    backend: str = "outbox"
    from_email: str = "digest@example.com"
    from_name: str = ""
    reply_to: str = ""
    sending_domain: str = "example.com"
    outbox: str = "build/outbox"
    unsubscribe_mailto: str = ""
    list_id: str = ""  # List-Id (RFC 2919); empty: "Site name" <digest.host of site.base_url>
    sendgrid_host: str = "https://api.sendgrid.com"
    timeout_seconds: float = 30.0
    max_retries: int = 5
    retry_base_seconds: float = 1.0  # first backoff delay; doubles per retry, with jitter
    smtp_host: str = "localhost"
    smtp_port: int = 587
    smtp_security: str = "starttls"  # starttls | ssl | none
    smtp_username: str = ""


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = "sqlite:///digest.db"


@dataclass(frozen=True)
class WebConfig:
    # The public address readers reach `digest serve` at; every personal link starts with it.
    base_url: str = "http://127.0.0.1:8000"
    confirm_hours: int = 72
    subscribe_per_hour: int = 10
    sendgrid_webhook_public_key: str = ""
    # Where readers find past editions (each email's "view in browser" link goes there); empty
    # means `digest serve` at base_url + "/archive". Set it when `digest archive --out` files
    # are hosted elsewhere.
    archive_url: str = ""
    # The public archive: `digest serve`'s /archive pages and feed, `digest archive --out`, and
    # each email's "view in browser" / "past editions" links. false: none of them (404).
    archive: bool = True


@dataclass(frozen=True)
class ScheduleConfig:
    cron: str = "0 7 * * 1"
    timezone: str = ""


@dataclass(frozen=True)
class Config:
    site: SiteConfig = field(default_factory=SiteConfig)
    posts: PostsConfig = field(default_factory=PostsConfig)
    edition: EditionConfig = field(default_factory=EditionConfig)
    categories: tuple[CategoryConfig, ...] = ()
    sender: SenderConfig = field(default_factory=SenderConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    web: WebConfig = field(default_factory=WebConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    # The folder relative paths resolve against; not a key in the file.
    root: Path = field(default_factory=Path.cwd)
    source: Path | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.site.timezone)

    @property
    def schedule_tz(self) -> ZoneInfo:
        return ZoneInfo(self.schedule.timezone or self.site.timezone)

    def path(self, value: str | Path) -> Path:
        """Resolve a path from the config against the config file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.root / p

    @property
    def templates_path(self) -> Path:
        if self.edition.templates:
            return self.path(self.edition.templates)
        return BUILTIN_TEMPLATES

    @property
    def archive_url(self) -> str:
        """The web archive's address, no trailing slash (digest.archive serves or writes it);
        empty when ``web.archive`` is off, so no email links to it."""
        if not self.web.archive:
            return ""
        return (self.web.archive_url or self.web.base_url.rstrip("/") + "/archive").rstrip("/")

    @property
    def posts_path(self) -> Path:
        return self.path(self.posts.folder)

    @property
    def database_url(self) -> str:
        url = os.environ.get(DATABASE_ENV) or self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            url = prefix + str(self.path(url[len(prefix) :]))
        return url

    @property
    def sendgrid_host(self) -> str:
        return (os.environ.get(SENDGRID_HOST_ENV) or self.sender.sendgrid_host).rstrip("/")

    def category_order(self) -> list[str]:
        return [c.name for c in self.categories]

    def find_category(self, name: str) -> CategoryConfig | None:
        key = category_key(name)
        return next((c for c in self.categories if c.key == key), None)


@functools.lru_cache(maxsize=4096)
def category_key(name: str) -> str:
    """Categories match without regard to case or surrounding space; the display name is kept.

    Cached: a send asks for the same few dozen names once per post per category set.
    """
    return " ".join(name.split()).casefold()


_CHOICES = {
    ("edition", "nothing_new"): ("skip", "note"),
    ("edition", "backdated"): ("include", "skip"),
    ("sender", "backend"): ("outbox", "sendgrid", "smtp"),
    ("sender", "smtp_security"): ("starttls", "ssl", "none"),
}
_POSITIVE = {
    ("edition", "window_days"),
    ("edition", "section_cap"),
    ("edition", "lead_words"),
    ("edition", "lead_min_words"),
    ("sender", "timeout_seconds"),
    ("sender", "retry_base_seconds"),
    ("web", "confirm_hours"),
}


def _build_section(cls: type, data: Any, where: str, source: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: [{where}] must be a table, not {type(data).__name__}.")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {where}.{unknown[0]}; known keys in [{where}] are: "
            f"{', '.join(sorted(names))}. Check the spelling or remove it."
        )
    values: dict[str, Any] = {}
    for name, value in data.items():
        expected = hints[name]
        key = f"{where}.{name}"
        if expected in ("int", int) or expected is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif expected is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            value = float(value) if ok else value
        elif expected is str:
            ok = isinstance(value, str)
        elif expected is bool:
            ok = isinstance(value, bool)
        elif expected == tuple[str, ...]:
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            value = tuple(value) if ok else value
        else:  # pragma: no cover - every field type is listed above
            ok = True
        if not ok:
            raise ConfigError(
                f"{source}: {key} has the wrong type ({value!r}); expected {_type_name(expected)}."
            )
        if isinstance(value, str):
            _check_text(source, where, name, value)
        elif isinstance(value, tuple):
            for item in value:
                _check_text(source, where, name, item)
        choices = _CHOICES.get((where, name))
        if choices and value not in choices:
            raise ConfigError(f"{source}: {key} is {value!r}; use one of: {', '.join(choices)}.")
        if (where, name) in _POSITIVE and value <= 0:
            raise ConfigError(f"{source}: {key} must be greater than 0 (it is {value!r}).")
        values[name] = value
    return cls(**values)


# Keys whose text may run over lines (a PEM key, a postal address, a description); every other
# string can reach a header, a subject or a one-line place, where a line break or another
# control character would break the message (or inject a header), so it is refused at load.
_MULTILINE = {
    ("web", "sendgrid_webhook_public_key"),
    ("site", "postal_address"),
    ("categories", "description"),
    # Jinja templates whose output the renderer folds onto one line (a TOML multi-line string).
    ("edition", "subject"),
    ("edition", "preheader"),
}
# Keys that must hold one email address (empty allowed where the key is optional).
_ADDRESS_KEYS = (("sender", "from_email"), ("sender", "reply_to"), ("sender", "unsubscribe_mailto"))


def _control_problem(value: str, multiline: bool) -> str:
    """The first character that cannot be in this value, described, or "" when it is clean."""
    for ch in value:
        if multiline and ch in "\n\r\t":
            continue
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Zl", "Zp") or ch in _BIDI or ch == "\ufeff":
            names = {"\r": "a carriage return (CR)", "\n": "a line break (LF)", "\t": "a tab"}
            return names.get(ch, f"the control character U+{ord(ch):04X}")
    return ""


_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def _check_text(source: str, where: str, name: str, value: str) -> None:
    section = "categories" if where.startswith("categories[") else where
    problem = _control_problem(value, (section, name) in _MULTILINE)
    if problem:
        raise ConfigError(
            f"{source}: {where}.{name} contains {problem}, which would break the email headers or "
            "pages it goes into; remove it (write the value on one line)."
        )


def _type_name(t: Any) -> str:
    return {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}.get(
        t, "a list of strings"
    )


def _categories(data: Any, source: str) -> tuple[CategoryConfig, ...]:
    """``categories`` is a list of names, or of tables with ``name`` and ``description``."""
    if not isinstance(data, list):
        raise ConfigError(f"{source}: categories must be a list ([[categories]] tables or names).")
    result: list[CategoryConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(data, 1):
        if isinstance(item, str):
            item = {"name": item}
        cat = _build_section(CategoryConfig, item, f"categories[{i}]", source)
        if not cat.name.strip():
            raise ConfigError(f"{source}: categories[{i}].name is empty; give the category a name.")
        if cat.key in seen:
            raise ConfigError(f"{source}: category {cat.name!r} is listed twice; keep one.")
        seen.add(cat.key)
        result.append(cat)
    return tuple(result)


_SECTIONS: dict[str, type] = {
    "site": SiteConfig,
    "posts": PostsConfig,
    "edition": EditionConfig,
    "sender": SenderConfig,
    "database": DatabaseConfig,
    "web": WebConfig,
    "schedule": ScheduleConfig,
}


def config_from_dict(data: dict[str, Any], *, root: Path, source: str = "config") -> Config:
    """Build a validated Config from parsed TOML (also what tests use to write configs inline)."""
    unknown = sorted(set(data) - set(_SECTIONS) - {"categories"})
    if unknown:
        raise ConfigError(
            f"{source}: unknown section [{unknown[0]}]; known sections are "
            f"{', '.join(sorted([*_SECTIONS, 'categories']))}."
        )
    kwargs: dict[str, Any] = {
        name: _build_section(cls, data.get(name, {}), name, source) for name, cls in _SECTIONS.items()
    }
    kwargs["categories"] = _categories(data.get("categories", []), source)
    config = Config(**kwargs, root=root, source=Path(source) if source != "config" else None)
    for key, tzname in (
        ("site.timezone", config.site.timezone),
        ("schedule.timezone", config.schedule.timezone),
    ):
        if tzname:
            try:
                ZoneInfo(tzname)
            except (ZoneInfoNotFoundError, ValueError):
                raise ConfigError(
                    f"{source}: {key} is {tzname!r}, which is not a known time zone; "
                    "use an IANA name such as 'Europe/London' or 'UTC'."
                ) from None
    for key, url in (
        ("site.base_url", config.site.base_url),
        ("web.base_url", config.web.base_url),
        ("web.archive_url", config.web.archive_url or "https://"),
    ):
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{source}: {key} must start with https:// (it is {url!r}).")
    if "@" not in config.sender.from_email:
        raise ConfigError(
            f"{source}: sender.from_email {config.sender.from_email!r} is not an email address."
        )
    _check_addresses(config, source)
    return config


_ONE_ADDRESS = re.compile(r"[^\s@<>,;\"()\[\]\\]+@[^\s@<>,;\"()\[\]\\]+")


def _check_addresses(config: Config, source: str) -> None:
    """The sender's addresses go into From, Reply-To and List-Unsubscribe: each must be one address.

    Syntax only (local@domain, no display name, list or brackets): a test or intranet domain
    such as ``brief.test`` or ``localhost`` is the operator's business.
    """
    for section, name in _ADDRESS_KEYS:
        value = getattr(getattr(config, section), name).strip()
        if name == "unsubscribe_mailto":
            value = value.removeprefix("mailto:")
        if not value and name != "from_email":
            continue
        if not _ONE_ADDRESS.fullmatch(value):
            raise ConfigError(
                f"{source}: {section}.{name} is {value!r}, which is not one email address; give a "
                "plain address such as news@example.com (no name, brackets or list)."
            )


def load_config(path: str | Path | None = None) -> Config:
    """Load the config named, else $DIGEST_CONFIG, else ./config.toml, else the built-in defaults."""
    explicit = path or os.environ.get(CONFIG_ENV)
    candidate = Path(explicit) if explicit else Path.cwd() / "config.toml"
    if not candidate.exists():
        if explicit:
            raise ConfigError(
                f"{candidate}: config file not found. Check the path given with --config or "
                f"${CONFIG_ENV}, or leave both out to use the built-in defaults."
            )
        return _with_site(config_from_dict({}, root=Path.cwd()))
    try:
        data = tomllib.loads(candidate.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{candidate}: not valid TOML ({exc}). Fix the line it names.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{candidate}: cannot read the config file ({exc}).") from None
    return _with_site(config_from_dict(data, root=candidate.resolve().parent, source=str(candidate)))


def _with_site(config: Config) -> Config:
    """The Jekyll/Hugo site's own config fills the [site] keys config.toml leaves unset."""
    from digest.sites import with_site_config  # imports this module

    return with_site_config(config)
