package provision

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/metric"
)

// Adapter is the part of an Engine that protocol adapters (packages scim,
// saml, jit, ldap, or a host's own) use besides the engine's calls: state
// kept per tenant, locks across replicas, refusals for the audit trail and
// the engine's meter provider. A host that mounts the adapters does not
// need it.
type Adapter struct{ e *Engine }

// AdapterOf returns e's adapter view.
func AdapterOf(e *Engine) Adapter { return Adapter{e: e} }

// Store returns the engine's Store, for reads an adapter makes that the
// engine has no call for. Writes must go through the engine.
func (a Adapter) Store() Store { return a.e.store }

// Refuse records a refusal made by an adapter (a login denied, a token
// rejected): it changes nothing, and goes to slog and Config.Audit.
func (a Adapter) Refuse(ctx context.Context, o Origin, action, reason string, err error) {
	a.e.refuse(ctx, o, action, reason, err)
}

// Lock takes the named lock of the tenant through the Store's Locker (or a
// process-local one), for adapters that must run one replica at a time
// (an LDAP sync). It returns ErrLocked when another holder has it.
//
// On success, held is derived from ctx and is cancelled when the lock is
// released or lost (context.Cause(held) then wraps ErrLockLost); do the
// protected work under held and stop writing as soon as it ends. Call
// release in every case. See Locker for the whole contract.
func (a Adapter) Lock(ctx context.Context, tenantID, name string) (held context.Context, release func(), err error) {
	return a.e.lock(ctx, tenantID, name)
}

// KVGet reads a tenant's value from the Store's KV (or process memory).
func (a Adapter) KVGet(ctx context.Context, tenantID, key string) ([]byte, error) {
	return a.e.kvGet(ctx, tenantID, key)
}

// KVSet stores a tenant's value; ttl 0 keeps it forever.
func (a Adapter) KVSet(ctx context.Context, tenantID, key string, value []byte, ttl time.Duration) error {
	return a.e.kvSet(ctx, tenantID, key, value, ttl)
}

// KVInsert stores a value only if the key has no live value, and reports
// whether it did: the primitive of the SAML replay cache.
func (a Adapter) KVInsert(ctx context.Context, tenantID, key string, value []byte, ttl time.Duration) (bool, error) {
	return a.e.kvInsert(ctx, tenantID, key, value, ttl)
}

// KVDelete removes a tenant's key.
func (a Adapter) KVDelete(ctx context.Context, tenantID, key string) error {
	return a.e.kvDelete(ctx, tenantID, key)
}

// MeterProvider returns the provider the engine records its metrics with
// (Config.MeterProvider, or the otel global), for adapters that record
// their own.
func (a Adapter) MeterProvider() metric.MeterProvider { return a.e.metrics.mp }

// EachOwnedUser calls fn with every live user of o's tenant whose Owner is
// o's connection, in the Store's stable order: what a sync adapter's sweep
// walks to find the users its source no longer lists. It pages through
// Store.ListUsers (1,000 users a page) and reads no Links, so it costs one
// pass over the tenant's users; ExternalID is not filled (GetUser fills
// it). Users created or deleted during the walk may be missed or seen
// twice. An error from fn stops the walk and is returned, except ErrStop.
func (a Adapter) EachOwnedUser(ctx context.Context, o Origin, fn func(User) error) error {
	return a.e.eachOwnedUser(ctx, o, fn)
}

// kvGet reads a tenant's value from the Store's KV (or process memory).
func (e *Engine) kvGet(ctx context.Context, tenantID, key string) ([]byte, error) {
	if e.kv != nil {
		return e.kv.KVGet(ctx, tenantID, key)
	}
	return e.localKV.KVGet(ctx, tenantID, key, e.now())
}

// kvSet stores a tenant's value; ttl 0 keeps it forever.
func (e *Engine) kvSet(ctx context.Context, tenantID, key string, value []byte, ttl time.Duration) error {
	if e.kv != nil {
		return e.kv.KVSet(ctx, tenantID, key, value, ttl)
	}
	e.localKV.KVSet(ctx, tenantID, key, value, ttl, e.now())
	return nil
}

// kvInsert stores a value only if the key has no live value, and reports
// whether it did: the primitive of the SAML replay cache.
func (e *Engine) kvInsert(ctx context.Context, tenantID, key string, value []byte, ttl time.Duration) (bool, error) {
	if e.kv != nil {
		return e.kv.KVInsert(ctx, tenantID, key, value, ttl)
	}
	return e.localKV.KVInsert(ctx, tenantID, key, value, ttl, e.now()), nil
}

// kvDelete removes a tenant's key.
func (e *Engine) kvDelete(ctx context.Context, tenantID, key string) error {
	if e.kv != nil {
		return e.kv.KVDelete(ctx, tenantID, key)
	}
	e.localKV.KVDelete(ctx, tenantID, key)
	return nil
}
