"""An index on checks.checked_at: the metrics count the last day's checks, and old checks are
thinned by age

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-27 21:40:00.000000
"""

from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('checks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_checks_checked_at'), ['checked_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('checks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_checks_checked_at'))
