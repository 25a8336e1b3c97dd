"""model environments: OCI images of model versions and the digest each run ran in (issue 15)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 15:30:00
"""

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # reserved; filled by the change that needs it


def downgrade() -> None:
    pass
