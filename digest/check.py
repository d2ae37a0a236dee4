"""The deliverability check: what would make a built edition clipped, filtered or unlawful.

``check_edition`` looks at a rendered edition and the config (and, when the sender passes them,
the headers it will use) and returns a checklist of findings. It runs before every real send:
an ``error`` stops the send, a ``warning`` is printed and the send goes on, an ``ok`` is a check
that passed (so the checklist shows what was looked at, not only what failed).

Pure: no network, no clock; the caniemail support data is a small JSON file in digest/data/.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from digest.config import Config
from digest.lead.rubric import advice
from digest.model import PLACEHOLDERS, UNSUBSCRIBE_URL, Edition, RenderedEdition

Level = Literal["error", "warning", "ok"]
ONE_CLICK = "List-Unsubscribe=One-Click"
CANIEMAIL_DATA = Path(__file__).resolve().parent / "data" / "caniemail-lints.json"
# Gmail shows about 70 characters of a subject on the desktop and fewer on phones; RFC 5322's
# 78 is where a subject certainly gets cut everywhere.
SUBJECT_LONG = 78
# A personal link as the sender fills it in: the web base URL, a path and a signed token.
_TOKEN_ALLOWANCE = 120
_DEFAULT_ADDRESS = "Example Publishing Ltd, 1 High Street, London N1 1AA, United Kingdom"
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}


@dataclass(frozen=True)
class Finding:
    """One line of the checklist: how bad, a stable code, what was found, and how to fix it."""

    level: Level
    code: str
    message: str
    fix: str = ""


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.level == "error" for f in findings)


def check_edition(
    rendered: RenderedEdition, config: Config, *, headers: Mapping[str, str] | None = None
) -> list[Finding]:
    """Every finding for one rendered edition, in checklist order.

    ``headers`` are the message headers the sender would use (placeholders allowed). Without
    them the check relies on the sender's contract: it adds List-Unsubscribe and
    List-Unsubscribe-Post from the UNSUBSCRIBE_URL placeholder, so that placeholder must be there.
    """
    real = config.sender.backend != "outbox"  # mail that leaves the machine: local URLs are errors
    doc = _parse(rendered.html)
    findings = [
        *_size(rendered, config),
        *_text_part(rendered),
        *_unsubscribe(rendered, config, headers, real),
        *_postal_address(rendered, doc, config, real),
        *_from_domain(config, headers),
        *_images(doc),
        *_links(doc, config, real),
        *_subject(rendered),
        *_client_support(rendered.html),
        *(Finding("warning", "render", w, "See the renderer's message above.") for w in rendered.warnings),
    ]
    return findings


# ---------------------------------------------------------------------------------------------
# The checks, one function each
# ---------------------------------------------------------------------------------------------


def _size(rendered: RenderedEdition, config: Config) -> list[Finding]:
    limit = config.edition.clip_warning_bytes
    # The sender swaps each placeholder for a signed URL, so the email as sent is a bit larger.
    growth = sum(
        rendered.html.count(p) * max(0, len(config.web.base_url) + _TOKEN_ALLOWANCE - len(p))
        for p in PLACEHOLDERS
    )
    size = rendered.html_bytes + growth
    shown = f"{size / 1000:.1f} KB" + (" with personal links filled in" if growth else "")
    if size > limit:
        return [
            Finding(
                "warning",
                "html-size",
                f"The HTML is {shown}; Gmail clips messages over about {limit / 1000:.0f} KB and hides "
                "the rest, footer and unsubscribe link included, behind 'View entire message'.",
                "Lower edition.section_cap or edition.lead_words, or trim the template.",
            )
        ]
    if size > 0.9 * limit:
        return [
            Finding(
                "warning",
                "html-size",
                f"The HTML is {shown}, close to Gmail's clipping limit of about {limit / 1000:.0f} KB.",
                "Lower edition.section_cap or edition.lead_words before the edition grows further.",
            )
        ]
    return [Finding("ok", "html-size", f"The HTML is {shown}, under Gmail's {limit / 1000:.0f} KB clipping.")]


def _text_part(rendered: RenderedEdition) -> list[Finding]:
    if not rendered.text.strip():
        return [
            Finding(
                "error",
                "text-part",
                "The plain-text part is empty; spam filters distrust HTML-only mail.",
                "Check the text template (edition.txt.j2) renders the posts.",
            )
        ]
    return [Finding("ok", "text-part", f"Plain-text part present ({len(rendered.text)} characters).")]


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.casefold()
    return next((v for k, v in headers.items() if k.casefold() == wanted), None)


_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[QqBb]\?")


def _encoded_words(headers: Mapping[str, str]) -> list[Finding]:
    """An RFC 2047 encoded-word in either unsubscribe header, as given or as the SMTP and outbox
    backends would write it (a sample message's raw bytes, the placeholder as a long URL)."""
    from email import policy

    from digest.send.base import OutgoingMessage, build_mime

    long_url = "https://example.com/unsubscribe/" + "x" * 160
    sample = {k: v.replace(UNSUBSCRIBE_URL, long_url) for k, v in headers.items()}
    message = OutgoingMessage(to="reader@example.com", subject="s", html="h", text="t", headers=sample)
    try:
        raw = build_mime(message, from_email="digest@example.com").as_bytes(policy=policy.SMTP)
        wire = re.sub(r"\r\n[ \t]", " ", raw.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace"))
    except ValueError as exc:  # not one line of ASCII: RawHeader refuses it
        wire = str(exc)
    lines = {line.partition(":")[0].casefold(): line for line in wire.split("\r\n")}
    bad = []
    for name in ("List-Unsubscribe", "List-Unsubscribe-Post"):
        given = _header(headers, name) or ""
        on_wire = lines.get(name.casefold(), "")
        if _ENCODED_WORD.search(given) or _ENCODED_WORD.search(on_wire) or (given and not on_wire):
            bad.append(name)
    if not bad:
        return [Finding("ok", "list-unsubscribe-encoded", "Unsubscribe headers go out as plain ASCII.")]
    return [
        Finding(
            "error",
            "list-unsubscribe-encoded",
            f"{' and '.join(bad)} would go out RFC 2047-encoded (=?utf-8?...?=) or unreadable, so "
            "Gmail's and Yahoo's one-click unsubscribe cannot find the URL (RFC 2369 wants <https://...>).",
            "Build them with digest.send.headers (plain ASCII URLs in angle brackets).",
        )
    ]


def _unsubscribe(
    rendered: RenderedEdition, config: Config, headers: Mapping[str, str] | None, real: bool
) -> list[Finding]:
    found: list[Finding] = []
    if headers is not None:
        found.extend(_encoded_words(headers))
        value = _header(headers, "List-Unsubscribe") or ""
        uris = re.findall(r"<([^>]*)>", value)
        # Whether the link is https and public is the unsubscribe-url check's business below.
        web = [u for u in uris if u.startswith(("https://", "http://")) or u == UNSUBSCRIBE_URL]
        if not web:
            found.append(
                Finding(
                    "error",
                    "list-unsubscribe",
                    "No List-Unsubscribe header with a web link"
                    + (f" (it is {value!r})" if value else "")
                    + "; Gmail and Yahoo require one for bulk mail.",
                    "Send through digest's senders, which add it for every recipient.",
                )
            )
        else:
            found.append(Finding("ok", "list-unsubscribe", f"List-Unsubscribe header present: {web[0][:60]}"))
        post = _header(headers, "List-Unsubscribe-Post")
        if (post or "").strip() != ONE_CLICK:
            found.append(
                Finding(
                    "error",
                    "one-click",
                    f"List-Unsubscribe-Post is {post!r}, not {ONE_CLICK!r} (RFC 8058 one-click).",
                    f"Add the header 'List-Unsubscribe-Post: {ONE_CLICK}'.",
                )
            )
        else:
            found.append(Finding("ok", "one-click", "One-click unsubscribe header present (RFC 8058)."))
    if UNSUBSCRIBE_URL not in rendered.html:
        found.append(
            Finding(
                "error",
                "unsubscribe-link",
                "The HTML has no unsubscribe link, so the sender cannot fill in the "
                "List-Unsubscribe headers or the footer link.",
                f"Put {{{{ unsubscribe_url }}}} ({UNSUBSCRIBE_URL}) in the footer of the HTML template.",
            )
        )
    elif UNSUBSCRIBE_URL not in rendered.text:
        found.append(
            Finding(
                "warning",
                "unsubscribe-link",
                "The plain-text part has no unsubscribe link.",
                f"Put the unsubscribe URL ({UNSUBSCRIBE_URL}) in the text template's footer.",
            )
        )
    else:
        how = "headers checked above" if headers is not None else "the sender adds the headers from it"
        found.append(
            Finding("ok", "unsubscribe-link", f"Unsubscribe link in the HTML and text parts ({how}).")
        )
    base = urlsplit(config.web.base_url)
    if base.scheme != "https" or base.hostname in _LOCAL_HOSTS:
        found.append(
            Finding(
                "error" if real else "warning",
                "unsubscribe-url",
                f"Personal links start with web.base_url {config.web.base_url!r}; one-click "
                "unsubscribe needs a public https address"
                + ("" if real else " (fine for the outbox, not for real mail)")
                + ".",
                "Set web.base_url to the https address readers reach `digest serve` at.",
            )
        )
    return found


def _visible_text(doc: _Doc) -> str:
    return " ".join(" ".join(doc.text).split()).casefold()


def _address_in(address: str, text: str) -> bool:
    """The address, allowing the template to break it into lines or parts."""
    flat = " ".join(text.split()).casefold()
    if " ".join(address.split()).casefold() in flat:
        return True
    parts = [" ".join(p.split()).casefold() for p in re.split(r"[,\n]", address) if p.strip()]
    return bool(parts) and all(p in flat for p in parts)


def _postal_address(rendered: RenderedEdition, doc: _Doc, config: Config, real: bool) -> list[Finding]:
    address = config.site.postal_address.strip()
    if not address:
        return [
            Finding(
                "error",
                "postal-address",
                "site.postal_address is empty; anti-spam law (CAN-SPAM, PECR) requires a postal "
                "address in every newsletter.",
                "Set site.postal_address in config.toml.",
            )
        ]
    found: list[Finding] = []
    if not _address_in(address, _visible_text(doc)):
        found.append(
            Finding(
                "error",
                "postal-address",
                "The postal address (site.postal_address) is not in the HTML footer.",
                "Show {{ site.postal_address }} in the HTML template's footer.",
            )
        )
    elif not _address_in(address, rendered.text):
        found.append(
            Finding(
                "warning",
                "postal-address",
                "The postal address is in the HTML but not in the plain-text part.",
                "Add {{ site.postal_address }} to the text template's footer.",
            )
        )
    else:
        found.append(Finding("ok", "postal-address", "Postal address in the footer of both parts."))
    if address == _DEFAULT_ADDRESS:
        found.append(
            Finding(
                "error" if real else "warning",
                "postal-address-default",
                "site.postal_address is still digest's example address.",
                "Set site.postal_address to your own postal address.",
            )
        )
    return found


def _domain(address: str) -> str:
    match = re.search(r"@([^>\s]+)", address)
    return match.group(1).strip().rstrip(".").casefold() if match else ""


def _from_domain(config: Config, headers: Mapping[str, str] | None) -> list[Finding]:
    from_value = (_header(headers, "From") if headers else None) or config.sender.from_email
    domain = _domain(from_value)
    sending = config.sender.sending_domain.strip().rstrip(".").casefold()
    if not sending:
        return [
            Finding(
                "warning",
                "from-domain",
                "sender.sending_domain is empty, so the From domain cannot be checked.",
                "Set sender.sending_domain to the domain you authenticated (SPF/DKIM) with your provider.",
            )
        ]
    # DMARC's relaxed alignment: the same domain, or one a subdomain of the other.
    aligned = domain == sending or domain.endswith("." + sending) or sending.endswith("." + domain)
    if not aligned:
        return [
            Finding(
                "error",
                "from-domain",
                f"The From address {from_value!r} is on {domain or 'no domain'}, not on the sending "
                f"domain {sending}; DMARC will fail and mail will be junked or rejected.",
                "Make sender.from_email an address on sender.sending_domain (or change the "
                "sending domain to the one you authenticated).",
            )
        ]
    return [Finding("ok", "from-domain", f"From address {from_value} matches the sending domain {sending}.")]


def _images(doc: _Doc) -> list[Finding]:
    missing = [src for src, alt in doc.images if alt is None]
    if missing:
        return [
            Finding(
                "warning",
                "image-alt",
                f"{len(missing)} image(s) without alt text, e.g. {missing[0]!r}; many clients block "
                "images by default and screen readers skip them.",
                'Give every <img> an alt attribute (alt="" for decoration).',
            )
        ]
    return [Finding("ok", "image-alt", f"All {len(doc.images)} image(s) have alt text.")]


def _links(doc: _Doc, config: Config, real: bool) -> list[Finding]:
    relative: list[str] = []
    insecure: list[str] = []
    local: list[str] = []
    scripted: list[str] = []
    for url in [*doc.links, *(src for src, _ in doc.images)]:
        url = url.strip()
        if not url or url.startswith("#") or any(url.startswith(p) for p in PLACEHOLDERS):
            continue
        parts = urlsplit(url)
        scheme = parts.scheme.casefold()
        if scheme in ("mailto", "tel"):
            continue
        if scheme in ("javascript", "data", "vbscript"):
            scripted.append(url)
        elif not scheme or not parts.netloc:
            relative.append(url)
        elif scheme != "https":
            insecure.append(url)
        if parts.hostname in _LOCAL_HOSTS:
            local.append(url)
    found: list[Finding] = []
    if relative:
        found.append(
            Finding(
                "error",
                "links-absolute",
                f"{len(relative)} relative link(s), e.g. {relative[0]!r}; in an email they lead nowhere.",
                "Use absolute URLs (site.base_url + path); check the post's links and site.base_url.",
            )
        )
    if scripted:
        found.append(
            Finding(
                "error",
                "links-scheme",
                f"{len(scripted)} javascript:/data: link(s), e.g. {scripted[0][:60]!r}; filters treat these as hostile.",
                "Remove them from the post or template.",
            )
        )
    if insecure:
        found.append(
            Finding(
                "warning",
                "links-https",
                f"{len(insecure)} link(s) not on https, e.g. {insecure[0]!r}.",
                "Use https:// links (set site.base_url to https, fix links in posts).",
            )
        )
    if local:
        found.append(
            Finding(
                "error" if real else "warning",
                "links-local",
                f"{len(local)} link(s) to this machine, e.g. {local[0]!r}; readers cannot open them.",
                "Set site.base_url and web.base_url to public addresses.",
            )
        )
    if not found:
        found.append(Finding("ok", "links", f"All {len(doc.links)} link(s) are absolute https."))
    return found


def _subject(rendered: RenderedEdition) -> list[Finding]:
    subject = " ".join(rendered.subject.split())
    if not subject:
        return [Finding("error", "subject", "The subject is empty.", "Set edition.subject in config.toml.")]
    if "{{" in subject or "{%" in subject or any(p in subject for p in PLACEHOLDERS):
        return [
            Finding(
                "error",
                "subject",
                f"The subject has template code left in it: {subject!r}.",
                "Fix edition.subject in config.toml.",
            )
        ]
    if len(subject) > SUBJECT_LONG:
        return [
            Finding(
                "warning",
                "subject",
                f"The subject is {len(subject)} characters; inboxes cut it at about 60-70 "
                f"(phones nearer 40): {subject[:60]!r}…",
                "Shorten edition.subject; put the detail in the preheader.",
            )
        ]
    found = [Finding("ok", "subject", f"Subject is {len(subject)} characters: {subject!r}.")]
    if not rendered.preheader.strip():
        found.append(
            Finding(
                "warning",
                "preheader",
                "The preheader is empty, so inboxes show the first text of the email instead.",
                "Set edition.preheader in config.toml.",
            )
        )
    return found


# ---------------------------------------------------------------------------------------------
# Email-client support (caniemail)
# ---------------------------------------------------------------------------------------------

# How each caniemail feature shows itself in HTML. Matched against the HTML with Outlook-only
# conditional comments removed (what's inside them is written for Outlook on purpose).
_LINT_PATTERNS: dict[str, str] = {
    "css-display-flex": r"display\s*:\s*(?:inline-)?flex\b",
    "css-display-grid": r"display\s*:\s*(?:inline-)?grid\b",
    "css-position": r"(?<![-\w])position\s*:\s*(?:absolute|fixed|relative|sticky)\b",
    "css-variables": r"var\(\s*--|(?:^|[{;\s])--[a-zA-Z][\w-]*\s*:",
    "css-at-keyframes": r"@keyframes\b",
    "css-animation": r"(?<![-\w])animation(?:-name)?\s*:",
    "css-transform": r"(?<![-\w])transform\s*:",
    "css-box-shadow": r"(?<![-\w])box-shadow\s*:",
    "css-text-shadow": r"(?<![-\w])text-shadow\s*:",
    "css-linear-gradient": r"linear-gradient\(",
    "css-unit-calc": r"calc\(",
    "css-at-import": r"@import\b",
    "html-svg": r"<svg\b",
    "html-video": r"<video\b",
    "html-audio": r"<audio\b",
    "html-form": r"<form\b",
    "html-object": r"<object\b",
    "html-picture": r"<picture\b",
    "html-srcset": r"\bsrcset\s*=",
    "image-svg": r"<img\b[^>]*\bsrc\s*=\s*[\"']?[^\"'\s>]+\.svg\b",
    "image-webp": r"<img\b[^>]*\bsrc\s*=\s*[\"']?[^\"'\s>]+\.webp\b",
    "image-base64": r"<img\b[^>]*\bsrc\s*=\s*[\"']?data:",
}
_STYLE_ATTR = re.compile(r"""\bstyle\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I)
_STYLE_BLOCK = re.compile(r"<style\b[^>]*>(.*?)</style>", re.S | re.I)
_MSO_ONLY = re.compile(r"<!--\[if\s[^\]]*\]>(?!<!-->).*?<!\[endif\]-->", re.S | re.I)
_COMMENT = re.compile(r"<!--.*?-->", re.S)


@functools.cache
def caniemail_data() -> dict[str, Any]:
    """The support table in digest/data (derived from caniemail; see the README there)."""
    data: dict[str, Any] = json.loads(CANIEMAIL_DATA.read_text(encoding="utf-8"))
    return data


def _client_support(html: str) -> list[Finding]:
    live = _COMMENT.sub("", _MSO_ONLY.sub("", html))
    # CSS features are looked for in CSS only (style attributes and <style> blocks), not in prose.
    css = "\n".join([*(a or b for a, b in _STYLE_ATTR.findall(live)), *_STYLE_BLOCK.findall(live)])
    found: list[Finding] = []
    for feature in caniemail_data()["features"]:
        pattern = _LINT_PATTERNS.get(feature["slug"])
        haystack = css if feature["slug"].startswith("css-") else live
        if not pattern or not re.search(pattern, haystack, re.I):
            continue
        unsupported = [client for client, code in feature["support"].items() if code == "n"]
        partial = [client for client, code in feature["support"].items() if code == "a"]
        if not unsupported and not partial:
            continue
        detail = "; ".join(
            part
            for part in (
                f"not supported by {', '.join(unsupported)}" if unsupported else "",
                f"partly by {', '.join(partial)}" if partial else "",
            )
            if part
        )
        found.append(
            Finding(
                "warning",
                f"caniemail:{feature['slug']}",
                f"The HTML uses {feature['title']}, {detail} (caniemail, tested {feature['last_test_date']}).",
                f"Use a table-based fallback or drop it; see {feature['url']}",
            )
        )
    if not found:
        found.append(
            Finding("ok", "caniemail", "No HTML/CSS features that Gmail or Outlook are known to drop.")
        )
    return found


# ---------------------------------------------------------------------------------------------
# HTML parsing
# ---------------------------------------------------------------------------------------------


class _Doc(HTMLParser):
    """Links, images and visible text of an email, gathered in one pass with the stdlib parser."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.images: list[tuple[str, str | None]] = []  # (src, alt or None when missing)
        self.text: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ("style", "script", "title", "head"):
            self._hidden += 1
        elif tag == "a" and values.get("href") is not None:
            self.links.append(values["href"] or "")
        elif tag == "img":
            self.images.append((values.get("src") or "", values.get("alt")))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ("style", "script", "title", "head"):
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "title", "head") and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.text.append(data)


def _parse(html: str) -> _Doc:
    doc = _Doc()
    doc.feed(html)
    doc.close()
    return doc


def check_leads(edition: Edition) -> list[Finding]:
    """A warning per weak lead (empty, markup, credit line, dangling colon...), naming the post
    and what to do, so a site owner can fix the post before it goes out; else one ok."""
    found = [
        Finding("warning", "lead", line, "Fix the post, or give it an `excerpt:` in its front matter.")
        for item in edition.items
        for line in advice(item)
    ]
    return found or [Finding("ok", "lead", f"Every lead reads as prose ({edition.post_count} posts).")]
