"""attempts: every start of a job, with where it ran and how it ended (the live record); a
partial index for the loop's cancel query

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'


def upgrade() -> None:
    op.create_table(
        'attempts',
        sa.Column('job_id', sa.Integer(), nullable=False),
        sa.Column('attempt', sa.Integer(), nullable=False),
        sa.Column('tenant', sa.String(length=100), nullable=False),
        sa.Column('site', sa.String(length=100), nullable=False),
        sa.Column('pool', sa.String(length=200), nullable=False),
        sa.Column('nodes', sa.JSON(), nullable=False),
        sa.Column('gpus', sa.Integer(), nullable=False),
        sa.Column('start_s', sa.Float(), nullable=False),
        sa.Column('end_s', sa.Float(), nullable=True),
        sa.Column('ended', sa.String(length=20), nullable=True),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id']),
        sa.PrimaryKeyConstraint('job_id', 'attempt'),
    )
    op.create_index('ix_attempts_tenant', 'attempts', ['tenant'])
    op.create_index('ix_attempts_start_s', 'attempts', ['start_s'])
    op.create_index('ix_attempts_end_s', 'attempts', ['end_s'])
    # the loop asks each step for cancels of live jobs: an index of just those rows, used
    # even before the planner has statistics (a bare boolean index was not: a full scan)
    live = sa.text("cancel_requested AND state NOT IN "
                   "('succeeded', 'failed', 'cancelled', 'rejected')")
    op.create_index('ix_jobs_cancel_live', 'jobs', ['id'], postgresql_where=live,
                    sqlite_where=live)


def downgrade() -> None:
    op.drop_index('ix_jobs_cancel_live', 'jobs')
    op.drop_table('attempts')
