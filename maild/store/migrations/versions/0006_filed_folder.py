"""filing tasks record the folder as it was created on the server

Revision ID: 0006_filed_folder
Revises: 0006_tracking
Create Date: 2026-11-28 09:00:00.000000
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0006_filed_folder'
down_revision = '0006_tracking'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('filing_tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('filed_folder', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('filing_tasks', schema=None) as batch_op:
        batch_op.drop_column('filed_folder')
