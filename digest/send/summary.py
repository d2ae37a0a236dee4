"""What a send reports: its summary, its progress, and the batches a crashed run left undecided."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

NOTHING_NEW = "nothing new in their categories"


@dataclass(frozen=True)
class InFlightBatch:
    """A batch a previous run sent without recording the answer (see the crash choice above)."""

    id: int
    category_set: str
    recipients: int
    since: datetime | None


@dataclass
class Progress:
    processed: int  # subscribers looked at
    total: int | None  # active subscribers when the run began
    sent: int
    skipped: int
    failed: int


@dataclass
class SendSummary:
    """What a run did: counts, reasons, and what needs a decision."""

    edition_id: str
    dry_run: bool = False
    sender: str = ""
    sent: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> readers
    failed: Counter[str] = field(default_factory=Counter)  # reason -> readers
    already_sent: int = 0
    batches: int = 0
    batches_failed: int = 0
    requests: int = 0
    category_sets: int = 0
    renders: int = 0
    in_flight: list[InFlightBatch] = field(default_factory=list)
    resent_in_flight: int = 0
    undecided: int = 0  # readers of this run's batches whose answer never came (not resent)
    stopped: str = ""  # why the run stopped early (bad key), or ""
    send_at: datetime | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())

    @property
    def ok(self) -> bool:
        return not self.stopped and not self.failed and not self.in_flight

    def __str__(self) -> str:
        verb = "would send" if self.dry_run else "sent"
        parts = [f"{self.sent} {verb} in {self.batches} batch(es)"]
        if self.already_sent:
            parts.append(f"{self.already_sent} already sent earlier")
        if self.skipped:
            parts.append(f"{self.skipped_total} skipped ({_reasons(self.skipped)})")
        if self.failed:
            parts.append(f"{self.failed_total} failed ({_reasons(self.failed)})")
        text = "; ".join(parts) + "."
        if self.in_flight:
            n = sum(b.recipients for b in self.in_flight)
            text += (
                f" {len(self.in_flight)} batch(es) ({n} readers) were in flight when an earlier run "
                "stopped and were not resent (undecided: their request may never have reached the "
                "provider); check the provider's activity, then use --resend-in-flight if they did not go out."
            )
        if self.stopped:
            text += f" Stopped: {self.stopped}"
        for note in self.notes:
            text += f" Note: {note}."
        return text


def _reasons(counter: Counter[str]) -> str:
    return ", ".join(f"{reason}: {n}" for reason, n in counter.most_common())


def reason(message: str) -> str:
    """A failure message shortened to a reason that groups well in the summary."""
    text = message.split(": ", 1)[-1] if message.count(": ") and "@" in message.split(": ", 1)[0] else message
    return text[:120]
