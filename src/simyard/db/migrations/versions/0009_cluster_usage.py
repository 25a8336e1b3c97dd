"""elastic compute: cluster workers and usage per task run (issue 16)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 15:30:00
"""

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # reserved; filled by the change that needs it


def downgrade() -> None:
    pass
