-- idprov sqlstore schema: the Registry (provision.Registry). {p} is the
-- table prefix. One self-contained step.
--
-- registry_tenants holds one row per tenant ever registered: a deleted
-- tenant stays as a tombstone (deleted, body emptied) holding the Rev of
-- its deletion, so that RegistryChanges reports it. domains and tokens
-- repeat the record's index entries (token hashes only, never tokens) as
-- JSON arrays, so that a record reads back from its one row.
CREATE TABLE {p}registry_tenants (
	tenant_id text COLLATE "C" NOT NULL PRIMARY KEY,
	version   bigint      NOT NULL,
	rev       bigint      NOT NULL,
	deleted   boolean     NOT NULL,
	modified  timestamptz NOT NULL,
	body      bytea       NOT NULL,
	domains   text        NOT NULL,
	tokens    text        NOT NULL
);
CREATE UNIQUE INDEX {p}registry_tenants_rev ON {p}registry_tenants (rev);

-- The live tenants' verified domains (lower case) and SCIM token hashes:
-- the primary keys make each one held by one tenant at most.
CREATE TABLE {p}registry_domains (
	domain    text COLLATE "C" NOT NULL PRIMARY KEY,
	tenant_id text COLLATE "C" NOT NULL
);
CREATE INDEX {p}registry_domains_tenant ON {p}registry_domains (tenant_id);

CREATE TABLE {p}registry_tokens (
	hash          bytea NOT NULL PRIMARY KEY,
	tenant_id     text COLLATE "C" NOT NULL,
	connection_id text COLLATE "C" NOT NULL
);
CREATE INDEX {p}registry_tokens_tenant ON {p}registry_tokens (tenant_id);

-- The registry-wide revision counter: a registry write takes the next Rev
-- by updating this row, which it then holds locked until commit, so that
-- registry writes serialize and Revs become visible in order.
CREATE TABLE {p}registry_rev (
	id  integer NOT NULL PRIMARY KEY CHECK (id = 1),
	rev bigint  NOT NULL
);
INSERT INTO {p}registry_rev (id, rev) VALUES (1, 0);
