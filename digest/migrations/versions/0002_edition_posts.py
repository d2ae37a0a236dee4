"""The ledger per category set, not per reader: which posts each email of an edition carried.

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-20

``received_posts`` (one row per reader and post: 700,000 rows for 100,000 readers) is left in
place, untouched, for editions sent before this revision; the delivery engine still reads it
(only when it has rows) and no longer writes it. What a reader received is now the posts of the
email (``deliveries.category_set``) their sent or in-flight delivery row points at.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "edition_posts",
        sa.Column("edition_id", sa.String(64), nullable=False),
        sa.Column("category_set", sa.Text(), nullable=False),
        sa.Column("post_id", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["edition_id"],
            ["editions.id"],
            name="fk_edition_posts_edition_id_editions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("edition_id", "category_set", "post_id", name="pk_edition_posts"),
    )
    op.create_index("ix_edition_posts_post_id", "edition_posts", ["post_id"])


def downgrade() -> None:
    op.drop_index("ix_edition_posts_post_id", table_name="edition_posts")
    op.drop_table("edition_posts")
