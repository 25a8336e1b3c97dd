"""rate limit counters shared by every server; the audit log

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 13:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_counters",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("counted_at", sa.Float(), nullable=False),
        sa.Column("blocked_until", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=True),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_actor", "audit_log", ["actor", "id"])
    op.create_index("ix_audit_log_account", "audit_log", ["account", "id"])
    op.create_index("ix_audit_log_action", "audit_log", ["action", "id"])


def downgrade() -> None:
    for name in ("action", "account", "actor", "at"):
        op.drop_index(f"ix_audit_log_{name}", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("rate_counters")
