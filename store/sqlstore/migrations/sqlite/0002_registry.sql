-- idprov sqlstore schema: the Registry (provision.Registry), SQLite. {p}
-- is the table prefix. One self-contained step: see the PostgreSQL file
-- for what the tables hold.
CREATE TABLE {p}registry_tenants (
	tenant_id TEXT    NOT NULL PRIMARY KEY,
	version   INTEGER NOT NULL,
	rev       INTEGER NOT NULL,
	deleted   INTEGER NOT NULL,
	modified  INTEGER NOT NULL,
	body      BLOB    NOT NULL,
	domains   TEXT    NOT NULL,
	tokens    TEXT    NOT NULL
) WITHOUT ROWID;
CREATE UNIQUE INDEX {p}registry_tenants_rev ON {p}registry_tenants (rev);

CREATE TABLE {p}registry_domains (
	domain    TEXT NOT NULL PRIMARY KEY,
	tenant_id TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX {p}registry_domains_tenant ON {p}registry_domains (tenant_id);

CREATE TABLE {p}registry_tokens (
	hash          BLOB NOT NULL PRIMARY KEY,
	tenant_id     TEXT NOT NULL,
	connection_id TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX {p}registry_tokens_tenant ON {p}registry_tokens (tenant_id);

CREATE TABLE {p}registry_rev (
	id  INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
	rev INTEGER NOT NULL
);
INSERT INTO {p}registry_rev (id, rev) VALUES (1, 0);
