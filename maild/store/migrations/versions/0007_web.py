"""web app: users, api_tokens, login_throttle, audit_log (append-only by trigger), full-text search over messages

Revision ID: 0007_web
Revises: 0006_trust
Create Date: 2026-12-02 09:00:00

Search: on SQLite an FTS5 external-content table `messages_fts` (rowid = messages.id) kept by triggers; on
PostgreSQL a GIN index over the same text as a tsvector (`ix_messages_fulltext`, expression in maild/services/search.py).
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0007_web'
down_revision = '0007_machine'
branch_labels = None
depends_on = None

# Keep in step with maild/services/search.py (PG_DOCUMENT): the query must use the indexed expression.
PG_DOCUMENT = ("to_tsvector('simple'::regconfig, coalesce(subject, '') || ' ' || coalesce(from_name, '') || ' ' || "
               "coalesce(from_addr, '') || ' ' || coalesce(to_addrs::text, '') || ' ' || coalesce(cc_addrs::text, '') "
               "|| ' ' || left(coalesce(text_body, ''), 200000))")

# An event's place on the timeline: a decided mail at its own date (a mailbox of years, ingested today, reads as those
# years), anything else when it occurred.
SHOWN_AT = ("COALESCE(CASE WHEN {row}.type IN ('mail.matched', 'mail.assigned') THEN "
            "(SELECT date FROM messages WHERE messages.id = {row}.message_id) END, {row}.occurred_at)")

FTS_COLUMNS = "subject, from_name, from_addr, to_addrs, cc_addrs, text_body"


def upgrade() -> None:
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('password_hash', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('disabled', sa.Boolean(), nullable=False),
    sa.Column('session_epoch', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_login_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('username')
    )
    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('token_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_sha256')
    )
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_tokens_user_id'), ['user_id'], unique=False)
    op.create_table('login_throttle',
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('via', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('target', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('before', sa.JSON(), nullable=True),
    sa.Column('after', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_actor'), ['actor'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_target'), ['target'], unique=False)

    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('shown_at', sa.DateTime(timezone=True), nullable=True))
    op.execute(f"UPDATE events SET shown_at = {SHOWN_AT.format(row='events')}")
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_timeline', ['thirdparty_id', 'shown_at', 'id'], unique=False)

    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute("CREATE TRIGGER events_shown_at AFTER INSERT ON events WHEN new.shown_at IS NULL BEGIN "
                   f"UPDATE events SET shown_at = {SHOWN_AT.format(row='new')} WHERE id = new.id; END")
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
                       "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END")
        op.execute(f"CREATE VIRTUAL TABLE messages_fts USING fts5({FTS_COLUMNS}, content='messages', "
                   "content_rowid='id', tokenize='unicode61 remove_diacritics 2')")
        new = ", ".join(f"new.{c.strip()}" for c in FTS_COLUMNS.split(","))
        old = ", ".join(f"old.{c.strip()}" for c in FTS_COLUMNS.split(","))
        op.execute(f"CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
                   f"INSERT INTO messages_fts(rowid, {FTS_COLUMNS}) VALUES (new.id, {new}); END")
        op.execute(f"CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
                   f"INSERT INTO messages_fts(messages_fts, rowid, {FTS_COLUMNS}) VALUES ('delete', old.id, {old}); END")
        op.execute(f"CREATE TRIGGER messages_fts_update AFTER UPDATE ON messages BEGIN "
                   f"INSERT INTO messages_fts(messages_fts, rowid, {FTS_COLUMNS}) VALUES ('delete', old.id, {old}); "
                   f"INSERT INTO messages_fts(rowid, {FTS_COLUMNS}) VALUES (new.id, {new}); END")
        op.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")
    else:
        op.execute("CREATE FUNCTION maild_events_shown_at() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                   f"IF NEW.shown_at IS NULL THEN NEW.shown_at := {SHOWN_AT.format(row='NEW')}; END IF; "
                   "RETURN NEW; END $$")
        op.execute("CREATE TRIGGER events_shown_at BEFORE INSERT ON events "
                   "FOR EACH ROW EXECUTE FUNCTION maild_events_shown_at()")
        op.execute("CREATE FUNCTION maild_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
                   "BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$")
        op.execute("CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
                   "FOR EACH STATEMENT EXECUTE FUNCTION maild_audit_log_append_only()")
        op.execute(f"CREATE INDEX ix_messages_fulltext ON messages USING gin ({PG_DOCUMENT})")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS events_shown_at")
        for name in ("messages_fts_insert", "messages_fts_delete", "messages_fts_update",
                     "audit_log_no_update", "audit_log_no_delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS messages_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_messages_fulltext")
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS maild_audit_log_append_only()")
        op.execute("DROP TRIGGER IF EXISTS events_shown_at ON events")
        op.execute("DROP FUNCTION IF EXISTS maild_events_shown_at()")
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_timeline')
        batch_op.drop_column('shown_at')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_target'))
        batch_op.drop_index(batch_op.f('ix_audit_log_at'))
        batch_op.drop_index(batch_op.f('ix_audit_log_actor'))
        batch_op.drop_index(batch_op.f('ix_audit_log_action'))
    op.drop_table('audit_log')
    op.drop_table('login_throttle')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_tokens_user_id'))
    op.drop_table('api_tokens')
    op.drop_table('users')
