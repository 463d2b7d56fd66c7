"""tracking_hits: one client's repeated opens and clicks of a mail, counted on the first one's event

Revision ID: 0006_tracking
Revises: 0005
Create Date: 2026-11-28 09:00:00.000000
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0006_tracking'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('tracking_hits',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.Column('outbox_id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=1), nullable=False),
    sa.Column('link', sa.Integer(), nullable=False),
    sa.Column('client', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('first_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('hits', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id')
    )
    with op.batch_alter_table('tracking_hits', schema=None) as batch_op:
        batch_op.create_index('ix_tracking_hits_repeat', ['outbox_id', 'client', 'first_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('tracking_hits', schema=None) as batch_op:
        batch_op.drop_index('ix_tracking_hits_repeat')
    op.drop_table('tracking_hits')
