"""Readers to and from CSV (email,name,categories,status): the import and export an admin runs.

A file from a spreadsheet or another tool is hostile input: each bad row is refused with its
line number and the rest go in, and a row never spans lines, so an unterminated quote costs
that row alone. Every exported cell a spreadsheet would run as a formula is neutralised with a
leading apostrophe, which import takes off again, so an export always reads back as it was.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from digest.config import Config
from digest.errors import StoreError
from digest.model import Subscriber
from digest.store import Store, utcnow
from digest.subscribers.lifecycle import _categories_of, _insert, _log, _row, _set_categories, _update
from digest.subscribers.rules import (
    EMAIL_MAX,
    ENDED,
    STATUSES,
    _show,
    category_list,
    check_source,
    clean_name,
    normalise_email,
    require_categories,
    resolve_categories,
)
from digest.subscribers.stream import iter_subscribers

CSV_COLUMNS = ("email", "name", "categories", "status")
# What makes a spreadsheet read a cell as a formula (OWASP's list, plus LF).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n|$)")


# ---------------------------------------------------------------------------------------------
# The spreadsheet guard


def _needs_guard(text: str) -> bool:
    """A cell a spreadsheet would run, or one that would look like a guarded one to ``unguard``."""
    while text.startswith("'"):
        text = text[1:]
    return text.startswith(FORMULA_START)


def guard(text: str) -> str:
    """A cell safe to open in a spreadsheet: a leading apostrophe when it would run as a formula.

    ``unguard(guard(t)) == t`` for every text: a cell that already starts with apostrophes
    before a formula character gets one more, so the one import takes off is always ours.
    """
    return "'" + text if _needs_guard(text) else text


def unguard(text: str) -> str:
    """``guard`` undone: the apostrophe export put in front of a formula character comes off."""
    return text[1:] if text.startswith("'") and _needs_guard(text[1:]) else text


# ---------------------------------------------------------------------------------------------
# Import


@dataclass(frozen=True)
class ImportProblem:
    line: int
    email: str
    message: str

    def __str__(self) -> str:
        if self.email and self.email not in self.message:
            return f"line {self.line}: {self.email}: {self.message}"
        return f"line {self.line}: {self.message}"


@dataclass
class ImportReport:
    """What an import did: counts, and each refused row with its line number."""

    path: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    problems: list[ImportProblem] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.created + self.updated + self.unchanged + len(self.problems)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        return (
            f"{self.path}: {self.rows} rows: {self.created} added, {self.updated} updated, "
            f"{self.unchanged} unchanged, {len(self.problems)} refused."
        )


def _physical_lines(text: str) -> list[str]:
    """Each line with its ending (CRLF, CR or LF), as csv.reader wants them."""
    return [m.group() for m in _LINE.finditer(text) if m.group()]


def _looks_like_row(line: str, email_at: int) -> bool:
    """A line that is a reader's row on its own: its email cell holds an address."""
    try:
        cells = next(csv.reader([line]), [])
    except csv.Error:
        return False
    if email_at >= len(cells) or "@" not in cells[email_at]:
        return False
    try:
        normalise_email(unguard(cells[email_at]))
    except StoreError:
        return False
    return True


def _closes(lines: list[str]) -> bool:
    """Whether these lines are one complete record: every quote opened is closed before the end."""
    try:
        next(csv.reader(lines, strict=True))
    except (csv.Error, StopIteration):
        return False
    return True


def parse_rows(text: str, *, email_at: int = 0) -> Iterator[tuple[int, list[str] | None, str]]:
    """(line, cells, "") for each CSV record, or (line, None, why) for a line that is not one.

    A quoted cell may hold a line break (a name written on two lines), but a quote left open
    must not swallow the rows after it: a record that runs over lines which are rows of their
    own (an address in their ``email_at`` column), or that never closes, costs its first line
    alone, and reading starts again on the next line.
    """
    lines = _physical_lines(text)
    i = 0
    while i < len(lines):
        reader = csv.reader(lines[j] for j in range(i, len(lines)))
        try:
            cells = next(reader)
        except StopIteration:  # pragma: no cover - lines[i] exists, so a record does
            return
        except csv.Error as exc:
            yield i + 1, None, f"not valid CSV ({exc}); check the quotes on this line"
            i += 1
            continue
        used = max(reader.line_num, 1)
        if used > 1:
            swallowed = any(_looks_like_row(lines[j], email_at) for j in range(i + 1, i + used))
            if (
                swallowed
                or not _closes(lines[i : i + used])
                or "\n" in "".join(cells[email_at : email_at + 1])
            ):
                yield (
                    i + 1,
                    None,
                    'a quote (") on this line is not closed where the cell ends, so the next '
                    f"{used - 1} line{'s' if used > 2 else ''} would have been read into it; this "
                    "line was skipped and the rest read on their own. Close or remove the quote",
                )
                i += 1
                continue
        yield i + 1, cells, ""
        i += used


def import_csv(store: Store, config: Config, path: str | Path, *, source: str = "import") -> ImportReport:
    """Add or update readers from a CSV (email,name,categories,status), one transaction per row.

    A bad row is reported with its line number and skipped; the rest go in. An existing reader
    gets the name, categories and status given (blank cells leave them alone), except that an
    import never re-subscribes someone who unsubscribed, bounced or complained.
    """
    require_categories(config)
    check_source(source)
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise StoreError(f"{path}: file not found.") from None
    except IsADirectoryError:
        raise StoreError(f"{path}: is a folder; give the CSV file inside it.") from None
    except OSError as exc:
        raise StoreError(f"{path}: cannot read it ({exc.strerror}).") from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise StoreError(f"{path}: line {line} is not UTF-8 text; save the file as UTF-8 CSV.") from None
    report = ImportReport(path=str(path))
    header: list[str] = []
    lines = _physical_lines(text)
    number = 0
    for number, first in enumerate(lines, 1):
        try:
            names = next(csv.reader([first]), [])
        except csv.Error as exc:
            raise StoreError(f"{path}: line {number} (the header) is not valid CSV ({exc}).") from None
        if any(c.strip() for c in names):
            header = [h.strip().lower() for h in names]
            break
    if not header:
        raise StoreError(f"{path}: the file is empty; the first line should be: email,name,categories,status")
    if "email" not in header:
        raise StoreError(
            f"{path}: line {number} has no 'email' column (found: {', '.join(header) or 'nothing'}); "
            "the first line should be: email,name,categories,status"
        )
    index = {name: header.index(name) for name in CSV_COLUMNS if name in header}
    for offset, cells, why in parse_rows("".join(lines[number:]), email_at=index["email"]):
        number_here = number + offset
        if cells is None:
            report.problems.append(ImportProblem(number_here, "", why))
            continue
        if not any(c.strip() for c in cells):
            continue

        def cell(name: str, cells: list[str] = cells) -> str:
            i = index.get(name)
            return unguard(cells[i]) if i is not None and i < len(cells) else ""

        raw_email = cell("email")
        try:
            outcome = _import_row(
                store, config, raw_email, cell("name"), cell("categories"), cell("status"), source
            )
        except StoreError as exc:
            report.problems.append(ImportProblem(number_here, raw_email.strip()[:EMAIL_MAX], str(exc)))
            continue
        setattr(report, outcome, getattr(report, outcome) + 1)
    return report


def _import_row(
    store: Store, config: Config, raw_email: str, raw_name: str, raw_cats: str, raw_status: str, source: str
) -> str:
    address = normalise_email(raw_email)
    name = clean_name(raw_name)
    status = raw_status.strip().lower()
    if status and status not in STATUSES:
        raise StoreError(f"{address}: unknown status {_show(status)}; use one of: {', '.join(STATUSES)}.")
    keys = resolve_categories(config, raw_cats) if raw_cats.strip() else None
    now = utcnow()
    with store.session() as session:
        row = _row(session, address, lock=True)
        if row is None:
            if keys is None:
                raise StoreError(f"{address}: no categories given; use some of: {category_list(config)}.")
            status = status or "active"
            sid = _insert(session, address, name, status, keys, now)
            _log(session, sid, "import", source, {"status": status, "categories": list(keys)}, now)
            return "created"
        changes: dict[str, Any] = {}
        values: dict[str, Any] = {}
        if status and status != row.status:
            if row.status in ENDED and status in ("active", "pending", "paused"):
                raise StoreError(
                    f"{address} is {row.status}; an import does not subscribe them again "
                    "(they have to opt in themselves)."
                )
            values["status"] = status
            if status == "unsubscribed":
                values["unsubscribed_at"] = now
            if status == "active" and row.confirmed_at is None:
                values["confirmed_at"] = now
            changes["status"] = {"from": row.status, "to": status}
        if name and name != row.name:
            values["name"] = name
            changes["name"] = True
        old = _categories_of(session, row.id)
        if keys is not None and keys != old:
            _set_categories(session, row.id, keys)
            changes["categories"] = {"from": list(old), "to": list(keys)}
        if not changes:
            return "unchanged"
        _update(session, row.id, updated_at=now, **values)
        _log(session, row.id, "import", source, changes, now)
        return "updated"


# ---------------------------------------------------------------------------------------------
# Export


def csv_row(sub: Subscriber) -> list[str]:
    """One reader as a CSV row in CSV_COLUMNS order, every cell guarded (categories joined with ';')."""
    return [guard(sub.email), guard(sub.name), guard(";".join(sub.categories)), guard(sub.status)]


def export_csv(
    store: Store,
    out: IO[str],
    *,
    statuses: Iterable[str] | None = None,
    categories: Iterable[str] | None = None,
) -> int:
    """Write every reader (or those with ``statuses``/``categories``) as CSV that import_csv reads back.

    Returns the number of rows written (not counting the header).
    """
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    count = 0
    for sub in iter_subscribers(store, statuses=statuses, categories=categories):
        writer.writerow(csv_row(sub))
        count += 1
    return count
