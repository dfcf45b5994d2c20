"""nodes: drained and down nodes; settings: the served fleet; audit: the operator's reason

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


def downgrade() -> None:
    with op.batch_alter_table('audit') as batch:
        batch.drop_column('detail')
    op.drop_table('settings')
    op.drop_table('nodes')
