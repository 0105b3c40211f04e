"""links.ignored read again with the ignored domains taken as names, not LIKE patterns

Before, a '_' in an ignored domain matched any one character, so ignoring my_blog.example
flagged the links of my-blog.example:8080 and x.myxblog.example too.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27 17:10:00.000000
"""

from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

# The rule of archiver.models.host_in_domain, as it stands at this revision (a migration must
# not change when the models do): the domain's backslashes, '%' and '_' escaped.
REFLAG = r"""
UPDATE links SET ignored = EXISTS (
    SELECT 1 FROM ignored_domains d
    WHERE links.host = d.domain
       OR links.host LIKE replace(replace(replace(d.domain, '\', '\\'), '%', '\%'), '_', '\_')
                          || ':%' ESCAPE '\'
       OR links.host LIKE '%.' || replace(replace(replace(d.domain, '\', '\\'), '%', '\%'),
                                          '_', '\_') ESCAPE '\'
       OR links.host LIKE '%.' || replace(replace(replace(d.domain, '\', '\\'), '%', '\%'),
                                          '_', '\_') || ':%' ESCAPE '\')
"""


def upgrade() -> None:
    op.execute(REFLAG)


def downgrade() -> None:
    """The flags stay: the older rule flagged these links by mistake."""
