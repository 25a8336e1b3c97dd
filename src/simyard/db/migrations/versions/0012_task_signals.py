"""real programs: exit code and signal apart (issue 14)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 15:30:00
"""

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # reserved; filled by the change that needs it


def downgrade() -> None:
    pass
