"""A batch's readers recorded once on the batch row; ``deliveries`` filled from it in bulk.

Revision ID: 0004
Revises: 0003
Create Date: 2026-02-03

Before a request the sender must durably record who is in it (the exactly-once rule). Writing
one ``deliveries`` row per reader at that moment, then updating it after the answer, meant two
writes per reader at pages scattered over three indexes (a category set's readers are spread
over every id): most of a million-reader send. Now the batch row carries its readers as a JSON
list of subscriber ids (``pending_ids``) until the sender writes them into ``deliveries`` in
one statement, in id order (at the end of the run, or at the start of the next one after a
crash), and clears the column. The partial index finds the batches still to be written.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PENDING = "pending_ids IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("pending_ids", sa.Text(), nullable=True))
    op.create_index(
        "ix_batches_pending",
        "batches",
        ["edition_id"],
        sqlite_where=sa.text(_PENDING),
        postgresql_where=sa.text(_PENDING),
    )


def downgrade() -> None:
    op.drop_index("ix_batches_pending", table_name="batches")
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("pending_ids")
