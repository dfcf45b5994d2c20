"""nodes: drained and down nodes; settings: the served fleet; audit: the operator's reason;
job_requests: the operator's hold, release, requeue; jobs.cancel_reason; tokens' names and
expiry; tenants.deleted_at

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'


def upgrade() -> None:
    op.create_table(
        'nodes',
        sa.Column('name', sa.String(length=300), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('by', sa.String(length=100), nullable=False),
        sa.Column('evict', sa.Boolean(), nullable=False),
        sa.Column('since', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )
    op.create_table(
        'settings',
        sa.Column('key', sa.String(length=100), nullable=False),
        sa.Column('value', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('key'),
    )
    with op.batch_alter_table('audit') as batch:
        batch.add_column(sa.Column('detail', sa.Text(), nullable=False, server_default=''))
    op.create_table(
        'job_requests',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('job_id', sa.Integer(), nullable=False),
        sa.Column('action', sa.String(length=20), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('by', sa.String(length=100), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('outcome', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_job_requests_job_id', 'job_requests', ['job_id'])
    op.create_index('ix_job_requests_done_at', 'job_requests', ['done_at'])
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('cancel_reason', sa.Text(), nullable=True))
    with op.batch_alter_table('tokens') as batch:
        batch.add_column(sa.Column('name', sa.String(length=100), nullable=False,
                                   server_default=''))
        batch.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('tenants') as batch:
        batch.add_column(sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('tenants') as batch:
        batch.drop_column('deleted_at')
    with op.batch_alter_table('tokens') as batch:
        batch.drop_column('expires_at')
        batch.drop_column('name')
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('cancel_reason')
    op.drop_table('job_requests')
    with op.batch_alter_table('audit') as batch:
        batch.drop_column('detail')
    op.drop_table('settings')
    op.drop_table('nodes')
