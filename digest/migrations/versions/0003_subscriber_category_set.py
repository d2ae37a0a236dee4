"""Each subscriber's category set, denormalised onto the row, so a send can stream readers by set.

Revision ID: 0003
Revises: 0002
Create Date: 2026-01-27

``subscribers.category_set`` is the reader's category keys, sorted and joined with ", " (the
same label ``deliveries.category_set`` uses; "" for none). With an index on
(status, category_set, id, email, name) the sender reads each set's readers together, one indexed page at a
time, instead of aggregating ``subscriber_categories`` per reader and buffering readers by set.
``digest.subscribers`` rewrites the column in the same transaction as every change to
``subscriber_categories``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Sorted as Python sorts the keys (code points), whatever the database's default collation.
_BACKFILL_SQLITE = """
UPDATE subscribers SET category_set = COALESCE((
    SELECT group_concat(category_key, ', ') FROM (
        SELECT category_key FROM subscriber_categories
        WHERE subscriber_id = subscribers.id ORDER BY category_key
    )
), '')
"""
_BACKFILL_POSTGRESQL = """
UPDATE subscribers AS s SET category_set = c.joined
FROM (
    SELECT subscriber_id, string_agg(category_key, ', ' ORDER BY category_key COLLATE "C") AS joined
    FROM subscriber_categories GROUP BY subscriber_id
) AS c
WHERE c.subscriber_id = s.id
"""


def upgrade() -> None:
    op.add_column(
        "subscribers",
        sa.Column("category_set", sa.Text(), nullable=False, server_default=""),
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(_BACKFILL_POSTGRESQL)
    else:
        op.execute(_BACKFILL_SQLITE)
    # Covering (email and name too): a send reads each page in index order, not from table
    # pages scattered over the file (a set's readers are spread over every id).
    op.create_index(
        "ix_subscribers_send_order", "subscribers", ["status", "category_set", "id", "email", "name"]
    )


def downgrade() -> None:
    op.drop_index("ix_subscribers_send_order", table_name="subscribers")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("category_set")
