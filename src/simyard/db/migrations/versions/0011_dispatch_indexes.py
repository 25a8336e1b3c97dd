"""dispatcher: indexes and stored parameter files (issue 13)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 15:30:00
"""

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # reserved; filled by the change that needs it


def downgrade() -> None:
    pass
