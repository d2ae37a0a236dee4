"""The subscriber service: the one API the CLI, the web app and the sender use to read and change readers.

- ``rules``: input checks every door shares (addresses follow ``digest.addresses``).
- ``lifecycle``: subscribe, confirm, categories, status, unsubscribe, erase, look-ups.
- ``stream``: the bulk reads (lists, exports, the send path's stream) and counts.
- ``csvio``: CSV import and export.
"""

from __future__ import annotations

from digest.subscribers.csvio import (
    CSV_COLUMNS,
    ImportProblem,
    ImportReport,
    csv_row,
    export_csv,
    guard,
    import_csv,
    parse_rows,
    unguard,
)
from digest.subscribers.lifecycle import (
    ADD,
    ALREADY_ACTIVE,
    CREATED,
    PENDING,
    REPLACE,
    RESUBSCRIBED,
    ConsentError,
    confirm,
    events_for,
    get,
    remove,
    set_categories,
    set_status,
    subscribe,
    unsubscribe,
)
from digest.subscribers.rules import (
    EMAIL_MAX,
    ENDED,
    LOCAL_PART_MAX,
    NAME_MAX,
    SOURCE_MAX,
    STATUSES,
    category_set_keys,
    category_set_label,
    clean_name,
    email_key,
    normalise_email,
    resolve_categories,
    split_categories,
)
from digest.subscribers.stream import (
    changed_send_rows,
    count_by_category,
    count_by_status,
    iter_send_rows,
    iter_subscribers,
)

__all__ = [
    "ADD",
    "ALREADY_ACTIVE",
    "CREATED",
    "CSV_COLUMNS",
    "EMAIL_MAX",
    "ENDED",
    "LOCAL_PART_MAX",
    "NAME_MAX",
    "PENDING",
    "REPLACE",
    "RESUBSCRIBED",
    "SOURCE_MAX",
    "STATUSES",
    "ConsentError",
    "ImportProblem",
    "ImportReport",
    "category_set_keys",
    "category_set_label",
    "changed_send_rows",
    "clean_name",
    "confirm",
    "count_by_category",
    "count_by_status",
    "csv_row",
    "email_key",
    "events_for",
    "export_csv",
    "get",
    "guard",
    "import_csv",
    "iter_send_rows",
    "iter_subscribers",
    "normalise_email",
    "parse_rows",
    "remove",
    "resolve_categories",
    "set_categories",
    "set_status",
    "split_categories",
    "subscribe",
    "unguard",
    "unsubscribe",
]
