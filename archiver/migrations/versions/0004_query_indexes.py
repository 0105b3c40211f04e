"""indexes for the dashboard's, the posts page's and replay's queries

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 09:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite has no NULLS LAST in an index, and needs none: it sorts NULL first, so last
    # when descending, which is the order the posts page asks for.
    nulls_last = "" if op.get_bind().dialect.name == "sqlite" else " NULLS LAST"
    op.create_index('ix_posts_published_id', 'posts',
                    [sa.text(f'published_at DESC{nulls_last}'), sa.text('id DESC')], unique=False)
    op.create_index('ix_links_state_id_host', 'links', ['state', 'id', 'host'], unique=False)
    op.create_index('ix_citations_link_post', 'citations', ['link_id', 'post_id'], unique=False)
    op.create_index('ix_captures_url_key_pattern', 'captures', ['url_key'], unique=False,
                    postgresql_ops={'url_key': 'text_pattern_ops'})


def downgrade() -> None:
    op.drop_index('ix_captures_url_key_pattern', table_name='captures')
    op.drop_index('ix_citations_link_post', table_name='citations')
    op.drop_index('ix_links_state_id_host', table_name='links')
    op.drop_index('ix_posts_published_id', table_name='posts')
