"""gateway_load: each API process's inference gateway publishes what it holds of a service
(in flight per replica, queued, SLO outcomes, draining replicas seen), so several API
processes route and autoscale on the same figures (kraft.infer.live)

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'


def upgrade() -> None:
    op.create_table(
        'gateway_load',
        sa.Column('gateway', sa.String(length=200), nullable=False),
        sa.Column('service_id', sa.Integer(), nullable=False),
        sa.Column('in_flight', sa.JSON(), nullable=False),
        sa.Column('draining_seen', sa.JSON(), nullable=False),
        sa.Column('queued', sa.Integer(), nullable=False),
        sa.Column('met', sa.Integer(), nullable=False),
        sa.Column('finished', sa.Integer(), nullable=False),
        sa.Column('at_s', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('gateway', 'service_id'),
    )


def downgrade() -> None:
    op.drop_table('gateway_load')
