"""model environments: OCI images of model versions and the digest each run ran in (issue 15)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 15:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("image_digest", sa.String(length=71), nullable=True))
        batch.add_column(sa.Column("task_images", sa.JSON(), nullable=True))
    with op.batch_alter_table("task_runs") as batch:
        batch.add_column(sa.Column("image_digest", sa.String(length=71), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("task_runs") as batch:
        batch.drop_column("image_digest")
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("task_images")
        batch.drop_column("image_digest")
