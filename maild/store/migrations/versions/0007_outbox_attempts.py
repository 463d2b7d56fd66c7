"""outbox: the connection DATA began on; outbox_attempts: every attempt's outcome and SMTP reply

Revision ID: 0007_outbox_attempts
Revises: 0006_trust
Create Date: 2026-12-02 09:10:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0007_outbox_attempts'
down_revision = '0006_trust'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('data_connection', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
    op.create_table('outbox_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('outbox_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('data_started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('connection', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('reply_code', sa.Integer(), nullable=True),
    sa.Column('reply', sa.Text(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['outbox_id'], ['outbox.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('outbox_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_attempts_outbox_id'), ['outbox_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbox_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_attempts_outbox_id'))
    op.drop_table('outbox_attempts')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('data_connection')
