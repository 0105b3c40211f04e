"""An index on posts.updated_at: the dashboard's change mark reads the latest post change

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27 17:20:00.000000
"""

from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('posts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_posts_updated_at'), ['updated_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('posts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_posts_updated_at'))
