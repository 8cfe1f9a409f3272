-- idprov sqlstore schema, version 1 (PostgreSQL). {p} is the table prefix.
-- Text columns use the "C" collation: comparisons and sorts are bytewise,
-- as in Go (and SQLite), and the indexes serve range and prefix queries.
CREATE TABLE {p}users (
	tenant_id          text COLLATE "C"        NOT NULL,
	id                 text COLLATE "C"        NOT NULL,
	user_name          text COLLATE "C"        NOT NULL,
	user_name_lower    text COLLATE "C"        NOT NULL,
	display_name_lower text COLLATE "C"        NOT NULL,
	owner              text COLLATE "C"        NOT NULL,
	active             boolean     NOT NULL,
	version            bigint      NOT NULL,
	created            timestamptz NOT NULL,
	modified           timestamptz NOT NULL,
	deleted            timestamptz,
	doc                json        NOT NULL,
	PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX {p}users_user_name ON {p}users (tenant_id, user_name_lower) WHERE deleted IS NULL;
CREATE INDEX {p}users_display_name ON {p}users (tenant_id, display_name_lower);
CREATE INDEX {p}users_deleted ON {p}users (tenant_id, deleted) WHERE deleted IS NOT NULL;

CREATE TABLE {p}user_emails (
	tenant_id   text COLLATE "C" NOT NULL,
	user_id     text COLLATE "C" NOT NULL,
	email_lower text COLLATE "C" NOT NULL,
	PRIMARY KEY (tenant_id, user_id, email_lower)
);
CREATE INDEX {p}user_emails_email ON {p}user_emails (tenant_id, email_lower);

CREATE TABLE {p}groups (
	tenant_id          text COLLATE "C"        NOT NULL,
	id                 text COLLATE "C"        NOT NULL,
	display_name_lower text COLLATE "C"        NOT NULL,
	owner              text COLLATE "C"        NOT NULL,
	version            bigint      NOT NULL,
	created            timestamptz NOT NULL,
	modified           timestamptz NOT NULL,
	doc                json        NOT NULL,
	PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX {p}groups_display_name ON {p}groups (tenant_id, display_name_lower, owner);

CREATE TABLE {p}members (
	tenant_id text COLLATE "C" NOT NULL,
	group_id  text COLLATE "C" NOT NULL,
	user_id   text COLLATE "C" NOT NULL,
	PRIMARY KEY (tenant_id, group_id, user_id),
	FOREIGN KEY (tenant_id, group_id) REFERENCES {p}groups (tenant_id, id) ON DELETE CASCADE,
	FOREIGN KEY (tenant_id, user_id) REFERENCES {p}users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX {p}members_user ON {p}members (tenant_id, user_id);

CREATE TABLE {p}links (
	tenant_id     text COLLATE "C"        NOT NULL,
	kind          text COLLATE "C"        NOT NULL,
	connection_id text COLLATE "C"        NOT NULL,
	external_id   text COLLATE "C"        NOT NULL,
	resource_id   text COLLATE "C"        NOT NULL,
	created       timestamptz NOT NULL,
	PRIMARY KEY (tenant_id, kind, connection_id, external_id)
);
CREATE UNIQUE INDEX {p}links_resource ON {p}links (tenant_id, kind, resource_id, connection_id);
CREATE INDEX {p}links_external_id ON {p}links (tenant_id, kind, external_id);

CREATE TABLE {p}events (
	tenant_id text COLLATE "C"        NOT NULL,
	seq       bigint      NOT NULL,
	time      timestamptz NOT NULL,
	kind      text COLLATE "C"        NOT NULL,
	user_id   text,
	doc       json        NOT NULL,
	PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX {p}events_time ON {p}events (tenant_id, time);
CREATE INDEX {p}events_user ON {p}events (tenant_id, user_id) WHERE user_id IS NOT NULL;

CREATE TABLE {p}event_seq (
	tenant_id text COLLATE "C"   NOT NULL PRIMARY KEY,
	seq       bigint NOT NULL
);

CREATE TABLE {p}cursors (
	tenant_id text COLLATE "C"   NOT NULL,
	consumer  text COLLATE "C"   NOT NULL,
	seq       bigint NOT NULL,
	PRIMARY KEY (tenant_id, consumer)
);

CREATE TABLE {p}kv (
	tenant_id text COLLATE "C"        NOT NULL,
	key       text COLLATE "C"        NOT NULL,
	value     bytea       NOT NULL,
	expires   timestamptz,
	PRIMARY KEY (tenant_id, key)
);
CREATE INDEX {p}kv_expires ON {p}kv (tenant_id, expires) WHERE expires IS NOT NULL;
