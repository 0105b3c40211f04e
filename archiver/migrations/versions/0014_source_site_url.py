"""sources.site_url: the blog's own address, for sources whose posts do not say it (a folder
of posts without url front matter); links to it are the blog's, not references

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-27 21:45:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sources', schema=None) as batch_op:
        batch_op.add_column(sa.Column('site_url', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sources', schema=None) as batch_op:
        batch_op.drop_column('site_url')
