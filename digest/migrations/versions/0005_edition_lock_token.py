"""A fencing token on the send lease: ``editions.lock_token``, incremented on every acquire.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

A run whose lease ran out (a long rate-limit wait, a stalled machine) must post nothing more
once another run has taken the edition over. Checking ``lock_owner`` is not enough on its own
to order two holders in time; each acquire bumps ``lock_token``, and recording a batch in
flight renews the lease only where owner, token and an unexpired lease all still match, in the
same transaction as the batch row (``digest.send.ledger``): zero rows, and the run stops.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("editions") as batch:
        batch.add_column(sa.Column("lock_token", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("editions") as batch:
        batch.drop_column("lock_token")
