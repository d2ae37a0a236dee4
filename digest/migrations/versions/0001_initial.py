"""Initial schema: subscribers and consent log, editions, deliveries, batches, ledger, webhooks.

Revision ID: 0001
Revises:
Create Date: 2026-01-12
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("confirmed_at", True),
        _ts("unsubscribed_at", True),
        sa.CheckConstraint(
            "status IN ('pending', 'active', 'paused', 'unsubscribed', 'bounced', 'complained')",
            name="ck_subscribers_status",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_subscribers"),
        sa.UniqueConstraint("email", name="uq_subscribers_email"),
        sa.UniqueConstraint("email_key", name="uq_subscribers_email_key"),
    )
    op.create_index("ix_subscribers_status_id", "subscribers", ["status", "id"])

    op.create_table(
        "subscriber_categories",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("category_key", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_subscriber_categories_subscriber_id_subscribers",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subscriber_id", "category_key", name="pk_subscriber_categories"),
    )
    op.create_index("ix_subscriber_categories_category_key", "subscriber_categories", ["category_key"])

    op.create_table(
        "subscription_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        _ts("at"),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_subscription_events_subscriber_id_subscribers",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_subscription_events"),
    )
    op.create_index("ix_subscription_events_subscriber_id_id", "subscription_events", ["subscriber_id", "id"])

    op.create_table(
        "editions",
        sa.Column("id", sa.String(64), nullable=False),
        _ts("window_start"),
        _ts("window_end"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("manifest", sa.Text(), nullable=True),
        sa.Column("sendgrid_batch_id", sa.String(200), nullable=True),
        _ts("send_at", True),
        sa.Column("lock_owner", sa.String(200), nullable=True),
        _ts("lock_expires", True),
        _ts("created_at"),
        _ts("sent_at", True),
        sa.PrimaryKeyConstraint("id", name="pk_editions"),
    )

    op.create_table(
        "batches",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("edition_id", sa.String(64), nullable=False),
        sa.Column("category_set", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("provider_message_id", sa.String(200), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.ForeignKeyConstraint(
            ["edition_id"],
            ["editions.id"],
            name="fk_batches_edition_id_editions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_batches"),
    )
    op.create_index("ix_batches_edition_id", "batches", ["edition_id"])

    op.create_table(
        "deliveries",
        sa.Column("edition_id", sa.String(64), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=True),
        sa.Column("category_set", sa.Text(), nullable=False),
        sa.Column("provider_message_id", sa.String(200), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _ts("updated_at"),
        sa.ForeignKeyConstraint(
            ["edition_id"],
            ["editions.id"],
            name="fk_deliveries_edition_id_editions",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_deliveries_subscriber_id_subscribers",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("edition_id", "subscriber_id", name="pk_deliveries"),
    )
    op.create_index("ix_deliveries_edition_id_state", "deliveries", ["edition_id", "state"])
    op.create_index("ix_deliveries_subscriber_id", "deliveries", ["subscriber_id"])

    op.create_table(
        "received_posts",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("post_id", sa.Text(), nullable=False),
        sa.Column("edition_id", sa.String(64), nullable=True),
        _ts("received_at"),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_received_posts_subscriber_id_subscribers",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subscriber_id", "post_id", name="pk_received_posts"),
    )

    op.create_table(
        "provider_events",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        _ts("at", True),
        sa.Column("payload", sa.Text(), nullable=False),
        _ts("processed_at", True),
        sa.PrimaryKeyConstraint("id", name="pk_provider_events"),
    )


def downgrade() -> None:
    for table in (
        "provider_events",
        "received_posts",
        "deliveries",
        "batches",
        "editions",
        "subscription_events",
        "subscriber_categories",
        "subscribers",
    ):
        op.drop_table(table)
