-- idprov sqlstore schema, version 1 (SQLite). {p} is the table prefix.
-- Times are integer unix microseconds (UTC); documents are JSON text.
CREATE TABLE {p}users (
	tenant_id          TEXT    NOT NULL,
	id                 TEXT    NOT NULL,
	user_name          TEXT    NOT NULL,
	user_name_lower    TEXT    NOT NULL,
	display_name_lower TEXT    NOT NULL,
	owner              TEXT    NOT NULL,
	active             INTEGER NOT NULL,
	version            INTEGER NOT NULL,
	created            INTEGER NOT NULL,
	modified           INTEGER NOT NULL,
	deleted            INTEGER,
	doc                TEXT    NOT NULL,
	PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX {p}users_user_name ON {p}users (tenant_id, user_name_lower) WHERE deleted IS NULL;
CREATE INDEX {p}users_display_name ON {p}users (tenant_id, display_name_lower);
CREATE INDEX {p}users_deleted ON {p}users (tenant_id, deleted) WHERE deleted IS NOT NULL;

CREATE TABLE {p}user_emails (
	tenant_id   TEXT NOT NULL,
	user_id     TEXT NOT NULL,
	email_lower TEXT NOT NULL,
	PRIMARY KEY (tenant_id, user_id, email_lower)
) WITHOUT ROWID;
CREATE INDEX {p}user_emails_email ON {p}user_emails (tenant_id, email_lower);

CREATE TABLE {p}groups (
	tenant_id          TEXT    NOT NULL,
	id                 TEXT    NOT NULL,
	display_name_lower TEXT    NOT NULL,
	owner              TEXT    NOT NULL,
	version            INTEGER NOT NULL,
	created            INTEGER NOT NULL,
	modified           INTEGER NOT NULL,
	doc                TEXT    NOT NULL,
	PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX {p}groups_display_name ON {p}groups (tenant_id, display_name_lower, owner);

CREATE TABLE {p}members (
	tenant_id TEXT NOT NULL,
	group_id  TEXT NOT NULL,
	user_id   TEXT NOT NULL,
	PRIMARY KEY (tenant_id, group_id, user_id),
	FOREIGN KEY (tenant_id, group_id) REFERENCES {p}groups (tenant_id, id) ON DELETE CASCADE,
	FOREIGN KEY (tenant_id, user_id) REFERENCES {p}users (tenant_id, id) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX {p}members_user ON {p}members (tenant_id, user_id);

CREATE TABLE {p}links (
	tenant_id     TEXT    NOT NULL,
	kind          TEXT    NOT NULL,
	connection_id TEXT    NOT NULL,
	external_id   TEXT    NOT NULL,
	resource_id   TEXT    NOT NULL,
	created       INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, kind, connection_id, external_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX {p}links_resource ON {p}links (tenant_id, kind, resource_id, connection_id);
CREATE INDEX {p}links_external_id ON {p}links (tenant_id, kind, external_id);

CREATE TABLE {p}events (
	tenant_id TEXT    NOT NULL,
	seq       INTEGER NOT NULL,
	time      INTEGER NOT NULL,
	kind      TEXT    NOT NULL,
	user_id   TEXT,
	doc       TEXT    NOT NULL,
	PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX {p}events_time ON {p}events (tenant_id, time);
CREATE INDEX {p}events_user ON {p}events (tenant_id, user_id) WHERE user_id IS NOT NULL;

CREATE TABLE {p}event_seq (
	tenant_id TEXT    NOT NULL PRIMARY KEY,
	seq       INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE {p}cursors (
	tenant_id TEXT    NOT NULL,
	consumer  TEXT    NOT NULL,
	seq       INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, consumer)
) WITHOUT ROWID;

CREATE TABLE {p}kv (
	tenant_id TEXT    NOT NULL,
	key       TEXT    NOT NULL,
	value     BLOB    NOT NULL,
	expires   INTEGER,
	PRIMARY KEY (tenant_id, key)
) WITHOUT ROWID;
CREATE INDEX {p}kv_expires ON {p}kv (tenant_id, expires) WHERE expires IS NOT NULL;

-- Locker: one row per held lock, with a lease the holder renews.
CREATE TABLE {p}locks (
	tenant_id TEXT    NOT NULL,
	name      TEXT    NOT NULL,
	owner     TEXT    NOT NULL,
	expires   INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, name)
) WITHOUT ROWID;
