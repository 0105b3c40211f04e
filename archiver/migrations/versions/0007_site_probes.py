"""site_probes: soft-404 probe answers kept across runs and workers

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 13:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'site_probes',
        sa.Column('key', sa.Text(), nullable=False),
        sa.Column('probed_at', sa.DateTime(), nullable=False),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('status', sa.Integer(), nullable=False),
        sa.Column('final_url', sa.Text(), nullable=True),
        sa.Column('sketch', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_site_probes')),
    )
    op.create_index(op.f('ix_site_probes_probed_at'), 'site_probes', ['probed_at'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_site_probes_probed_at'), table_name='site_probes')
    op.drop_table('site_probes')
