"""reliability: deliveries claimed by one server (issue 18)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 15:30:00
"""

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # reserved; filled by the change that needs it


def downgrade() -> None:
    pass
