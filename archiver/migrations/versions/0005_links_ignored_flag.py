"""links.ignored: whether a link's host is under an ignored domain, kept on the row

Filters and counts read this column (and an index beginning with it) instead of matching
every row's host against every ignored domain with LIKE.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 09:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

# The rule of archiver.models.host_in_domain, as it stands at this revision (a migration must
# not change when the models do).
FLAG_EXISTING = """
UPDATE links SET ignored = true WHERE EXISTS (
    SELECT 1 FROM ignored_domains d
    WHERE links.host = d.domain OR links.host LIKE d.domain || ':%'
       OR links.host LIKE '%.' || d.domain OR links.host LIKE '%.' || d.domain || ':%')
"""


def upgrade() -> None:
    with op.batch_alter_table('links', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ignored', sa.Boolean(), server_default=sa.false(),
                                      nullable=False))
        batch_op.drop_index('ix_links_state_id_host')
        batch_op.drop_index('ix_links_state')
        batch_op.create_index('ix_links_ignored_state_id_host',
                              ['ignored', 'state', 'id', 'host'], unique=False)
        batch_op.create_index('ix_links_ignored_state', ['ignored', 'state'], unique=False)
    op.execute(FLAG_EXISTING)


def downgrade() -> None:
    with op.batch_alter_table('links', schema=None) as batch_op:
        batch_op.drop_index('ix_links_ignored_state')
        batch_op.drop_index('ix_links_ignored_state_id_host')
        batch_op.create_index('ix_links_state', ['state'], unique=False)
        batch_op.create_index('ix_links_state_id_host', ['state', 'id', 'host'], unique=False)
        batch_op.drop_column('ignored')
