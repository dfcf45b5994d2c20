"""leases: the scheduling loop's right to act on a shared database (kraft.control.leader);
attempts.leader_epoch: the lease's epoch (its fencing token) under which an attempt started

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'


def upgrade() -> None:
    op.create_table(
        'leases',
        sa.Column('name', sa.String(length=50), nullable=False),
        sa.Column('epoch', sa.BigInteger(), nullable=False),
        sa.Column('holder', sa.String(length=200), nullable=False),
        sa.Column('until', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )
    with op.batch_alter_table('attempts') as batch:
        batch.add_column(sa.Column('leader_epoch', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('attempts') as batch:
        batch.drop_column('leader_epoch')
    op.drop_table('leases')
