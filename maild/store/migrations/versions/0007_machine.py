"""machine mail: messages.kind and .machine (classification), bounces (per recipient), address_health

Revision ID: 0007_machine
Revises: 0006_trust
Create Date: 2026-12-02 09:30:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0007_machine'
down_revision = '0007_worker_status'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True))
        batch_op.add_column(sa.Column('machine', sa.JSON(), nullable=True))
        batch_op.create_index(batch_op.f('ix_messages_kind'), ['kind'], unique=False)

    op.create_table('bounces',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('outbox_id', sa.Integer(), nullable=True),
    sa.Column('address', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
    sa.Column('diagnostic', sa.Text(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('hard', sa.Boolean(), nullable=False),
    sa.Column('counted', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], ),
    sa.ForeignKeyConstraint(['outbox_id'], ['outbox.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('message_id', 'address', name='uq_bounces_message_address')
    )
    with op.batch_alter_table('bounces', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bounces_address'), ['address'], unique=False)
        batch_op.create_index(batch_op.f('ix_bounces_message_id'), ['message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_bounces_outbox_id'), ['outbox_id'], unique=False)

    op.create_table('address_health',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('address', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
    sa.Column('since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('soft_count', sa.Integer(), nullable=False),
    sa.Column('first_soft_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_bounce_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('message_id', sa.Integer(), nullable=True),
    sa.Column('cleared_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cleared_by_message_id', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['cleared_by_message_id'], ['messages.id'], ),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('address')
    )
    with op.batch_alter_table('address_health', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_address_health_state'), ['state'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('address_health', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_address_health_state'))
    op.drop_table('address_health')
    with op.batch_alter_table('bounces', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bounces_outbox_id'))
        batch_op.drop_index(batch_op.f('ix_bounces_message_id'))
        batch_op.drop_index(batch_op.f('ix_bounces_address'))
    op.drop_table('bounces')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_messages_kind'))
        batch_op.drop_column('machine')
        batch_op.drop_column('kind')
