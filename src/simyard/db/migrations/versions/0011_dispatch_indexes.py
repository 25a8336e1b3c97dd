"""dispatcher: indexes, stored parameter files, metrics read on the worker (issue 13)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 15:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The parameter file rendered once at submission; the worker writes it, compare diffs
    # it. None for runs created before (they render it again) and models without one.
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parameter_file", sa.LargeBinary(), nullable=True))
    # The run's metrics a task's own files hold, read on the worker (None: read before).
    with op.batch_alter_table("task_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("metrics", sa.JSON(), nullable=True))
    # The dispatcher's claim: the oldest queued task runs (WHERE state ORDER BY queued_at, id).
    op.create_index("ix_task_runs_state_queued", "task_runs", ["state", "queued_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_task_runs_state_queued", table_name="task_runs")
    with op.batch_alter_table("task_runs", schema=None) as batch_op:
        batch_op.drop_column("metrics")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("parameter_file")
