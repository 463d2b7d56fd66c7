"""dunning: postal addresses and names for letters, invoice holds

Revision ID: 0007_dunning
Revises: 0007_worker_status
Create Date: 2026-12-02 12:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0007_dunning'
down_revision = '0007_web'
branch_labels = None
depends_on = None

_S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    with op.batch_alter_table('thirdparties', schema=None) as batch_op:
        batch_op.add_column(sa.Column('street', _S(length=200), nullable=True))
        batch_op.add_column(sa.Column('zip', _S(length=20), nullable=True))
        batch_op.add_column(sa.Column('town', _S(length=200), nullable=True))
        batch_op.add_column(sa.Column('country', _S(length=100), nullable=True))
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('salutation', _S(length=20), nullable=True))
        batch_op.add_column(sa.Column('title', _S(length=50), nullable=True))
        batch_op.add_column(sa.Column('first_name', _S(length=150), nullable=True))
        batch_op.add_column(sa.Column('last_name', _S(length=150), nullable=True))
        batch_op.add_column(sa.Column('street', _S(length=200), nullable=True))
        batch_op.add_column(sa.Column('zip', _S(length=20), nullable=True))
        batch_op.add_column(sa.Column('town', _S(length=200), nullable=True))
        batch_op.add_column(sa.Column('country', _S(length=100), nullable=True))
    op.create_table(
        'invoice_holds',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('invoice_id', sa.Integer(), nullable=False),
        sa.Column('kind', _S(length=20), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('message_id', sa.Integer(), nullable=True),
        sa.Column('owner', _S(length=200), nullable=True),
        sa.Column('task_id', sa.Integer(), nullable=True),
        sa.Column('status_before', _S(length=20), nullable=False),
        sa.Column('until', sa.Date(), nullable=True),
        sa.Column('held_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('escalated_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('resolution', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], ),
        sa.ForeignKeyConstraint(['message_id'], ['messages.id'], ),
        sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('invoice_id', 'message_id'),
    )
    with op.batch_alter_table('invoice_holds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invoice_holds_invoice_id'), ['invoice_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_invoice_holds_resolved_at'), ['resolved_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('invoice_holds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invoice_holds_resolved_at'))
        batch_op.drop_index(batch_op.f('ix_invoice_holds_invoice_id'))
    op.drop_table('invoice_holds')
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        for name in ('country', 'town', 'zip', 'street', 'last_name', 'first_name', 'title', 'salutation'):
            batch_op.drop_column(name)
    with op.batch_alter_table('thirdparties', schema=None) as batch_op:
        for name in ('country', 'town', 'zip', 'street'):
            batch_op.drop_column(name)
