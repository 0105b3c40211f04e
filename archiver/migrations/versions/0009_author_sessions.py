"""author_sessions and login_attempts: the author's login and its rate limit kept in the
database, shared by every web process

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 14:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'author_sessions',
        sa.Column('id_hash', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id_hash', name=op.f('pk_author_sessions')),
    )
    op.create_index(op.f('ix_author_sessions_expires_at'), 'author_sessions', ['expires_at'],
                    unique=False)
    op.create_table(
        'login_attempts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('address', sa.String(length=255), nullable=False),
        sa.Column('attempted_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_login_attempts')),
    )
    op.create_index('ix_login_attempts_address_time', 'login_attempts',
                    ['address', 'attempted_at'], unique=False)
    op.create_index(op.f('ix_login_attempts_attempted_at'), 'login_attempts', ['attempted_at'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_login_attempts_attempted_at'), table_name='login_attempts')
    op.drop_index('ix_login_attempts_address_time', table_name='login_attempts')
    op.drop_table('login_attempts')
    op.drop_index(op.f('ix_author_sessions_expires_at'), table_name='author_sessions')
    op.drop_table('author_sessions')
