"""jobs.queue_s: a job's place in line when the operator moved it (kraft admin job top);
nodes.start_s, end_s: a maintenance window (kraft admin node drain --from --until);
queues: each tenant's waiting jobs in the scheduler's order, as the loop last saw them

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('queue_s', sa.Float(), nullable=True))
    op.create_table(
        'queues',
        sa.Column('tenant', sa.String(length=100), nullable=False),
        sa.Column('at_s', sa.Float(), nullable=False),
        sa.Column('value', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('tenant'),
    )
    with op.batch_alter_table('nodes') as batch:
        batch.add_column(sa.Column('start_s', sa.Float(), nullable=True))
        batch.add_column(sa.Column('end_s', sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_table('queues')
    with op.batch_alter_table('nodes') as batch:
        batch.drop_column('end_s')
        batch.drop_column('start_s')
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('queue_s')
