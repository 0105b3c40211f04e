"""dashboard_figures: the dashboard's counts, stored so a large archive's page need not count

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 12:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'dashboard_figures',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('counted_at', sa.DateTime(), nullable=False),
        sa.Column('cost_ms', sa.Float(), nullable=False),
        sa.Column('mark', sa.JSON(), nullable=False),
        sa.Column('figures', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_dashboard_figures')),
    )


def downgrade() -> None:
    op.drop_table('dashboard_figures')
