"""messages: the sender's authentication (auth, auth_reason) from our trusted server's Authentication-Results

Revision ID: 0006_trust
Revises: 0006_filed_folder
Create Date: 2026-12-02 10:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0006_trust'
down_revision = '0006_filed_folder'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('auth', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True))
        batch_op.add_column(sa.Column('auth_reason', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('auth_reason')
        batch_op.drop_column('auth')
