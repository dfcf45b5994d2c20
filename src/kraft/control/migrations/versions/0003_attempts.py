"""attempts: every start of a job, with where it ran and how it ended (the live record)

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


def downgrade() -> None:
    op.drop_table('attempts')
