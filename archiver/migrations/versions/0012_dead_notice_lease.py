"""links.dead_notice_lease_until/_owner: one notifier at a time sends a dead link's notice

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('links', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dead_notice_lease_until', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('dead_notice_lease_owner', sa.String(length=64),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('links', schema=None) as batch_op:
        batch_op.drop_column('dead_notice_lease_owner')
        batch_op.drop_column('dead_notice_lease_until')
