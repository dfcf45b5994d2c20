"""inference services: the services table; replica jobs point at their service

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'


def upgrade() -> None:
    op.create_table(
        'services',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('tenant', sa.String(length=100), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('spec', sa.JSON(), nullable=False),
        sa.Column('desired_replicas', sa.Integer(), nullable=False),
        sa.Column('deleted', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['tenant'], ['tenants.name']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('tenant', 'name'),
    )
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('service_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('draining', sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.create_index('ix_jobs_service_id', ['service_id'])


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.drop_index('ix_jobs_service_id')
        batch.drop_column('draining')
        batch.drop_column('service_id')
    op.drop_table('services')
