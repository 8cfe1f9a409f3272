package provision

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
)

// PutTenant registers tenant t in the Store's Registry, or replaces the
// registered tenant with its ID (its name, verified domains, access
// rules, webhook and connections), and records in the tenant's event log
// a connection.activated, connection.updated or connection.deleted event
// per connection added, changed or removed. Secrets are sealed with
// Config.SecretKeys before they reach the Store.
//
// A nil t.Connections keeps the registered connections (a change of name
// or domains only). Access rules are taken when the tenant is created;
// later they change through PlanAccessRules and ConfirmPlan, so that
// no rule change lands without a preview.
//
// t.Version 0 replaces whatever is registered (or creates); a non-zero
// t.Version must be the registered version, else ErrVersionConflict. A
// verified domain another tenant holds is a *DomainError (ErrAlreadyExists)
// and nothing changes. It returns the tenant as registered. Every engine
// sharing the Store serves the change within Config.FollowInterval (at
// once where FollowRegistry hears a notification).
func (e *Engine) PutTenant(ctx context.Context, t Tenant, actor string) (Tenant, error) {
	return e.modifyRegistered(ctx, t.ID, actor, t.Version, true, func(cur *Tenant) error {
		next := cloneTenant(&t)
		if t.Connections == nil {
			next.Connections = cur.Connections
		}
		if cur.Version != 0 && !slices.EqualFunc(cur.AccessRules, next.AccessRules, sameRule) {
			if t.AccessRules != nil {
				e.log.WarnContext(ctx, "provision: PutTenant keeps the tenant's access rules; change them with PlanAccessRules and ConfirmPlan", "tenant", t.ID)
			}
			next.AccessRules = cur.AccessRules
		}
		next.Version = cur.Version
		*cur = next
		return nil
	})
}

// PutConnection adds connection c to the registered tenant, or replaces
// the connection with its ID, recording connection.activated or
// connection.updated (nothing when c equals what is registered). The
// tenant must be registered (PutTenant). It returns the connection as
// registered.
func (e *Engine) PutConnection(ctx context.Context, tenantID string, c Connection, actor string) (Connection, error) {
	var out Connection
	_, err := e.modifyRegistered(ctx, tenantID, actor, 0, false, func(cur *Tenant) error {
		i := slices.IndexFunc(cur.Connections, func(x Connection) bool { return x.ID == c.ID })
		if i < 0 {
			cur.Connections = append(cur.Connections, cloneConnection(c))
		} else {
			cur.Connections[i] = cloneConnection(c)
		}
		out = cloneConnection(c)
		return nil
	})
	return out, err
}

// DeleteConnection removes a connection of the registered tenant and
// records connection.deleted. Its tokens and logins are refused by every
// engine from then on; the users and groups it owned stay as they are
// (orphans a directory may adopt). An unknown connection is ErrNotFound.
func (e *Engine) DeleteConnection(ctx context.Context, tenantID, connectionID, actor string) error {
	_, err := e.modifyRegistered(ctx, tenantID, actor, 0, false, func(cur *Tenant) error {
		i := slices.IndexFunc(cur.Connections, func(x Connection) bool { return x.ID == connectionID })
		if i < 0 {
			return fmt.Errorf("%w: tenant %q has no connection %q", ErrNotFound, tenantID, connectionID)
		}
		cur.Connections = slices.Delete(cur.Connections, i, i+1)
		for j := range cur.Connections {
			if cur.Connections[j].PairedWith == connectionID {
				cur.Connections[j].PairedWith = ""
				cur.Connections[j].Match = slices.DeleteFunc(cur.Connections[j].Match, func(m MatchRule) bool { return m == MatchPairedExternalID })
			}
		}
		return nil
	})
	return err
}

// DeleteTenant removes the registered tenant from the Registry (its
// connections' connection.deleted events are recorded first); its users,
// groups and events stay in the Store. Every later call for it fails with
// ErrUnknownTenant.
func (e *Engine) DeleteTenant(ctx context.Context, tenantID, actor string) error {
	if e.reg == nil {
		return ErrNoRegistry
	}
	if e.isDeclared(tenantID) {
		return fmt.Errorf("%w: %q", ErrDeclared, tenantID)
	}
	var rev int64
	tmp := &Tenant{ID: tenantID}
	err := e.atomically(ctx, scope{origin: Origin{TenantID: tenantID, Actor: actor}, tenant: tmp}, false, func(ctx context.Context, tx Store, rec *recorder) error {
		reg, ok := tx.(Registry)
		if !ok {
			return ErrNoRegistry
		}
		r, err := reg.GetTenantRecord(ctx, tenantID)
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%w: %q", ErrUnknownTenant, tenantID)
		}
		if err != nil {
			return err
		}
		old, err := e.reg.decode(r)
		if err != nil {
			return err
		}
		for _, c := range old.Connections {
			c := c
			rec.add(Change{Kind: ConnectionDeleted, Origin: Origin{TenantID: tenantID, ConnectionID: c.ID, Actor: actor}, Connection: &c})
		}
		if err := reg.DeleteTenantRecord(ctx, tenantID, r.Version); err != nil {
			return err
		}
		// The delete took the next revision; the transaction sees it.
		rev, err = reg.RegistryRev(ctx)
		return err
	})
	if err != nil {
		return err
	}
	e.reg.forget(tenantID, rev)
	return nil
}

// ListTenants returns a page of the registered tenants, in ID order, and
// their total. Declared tenants are listed by Tenants.
func (e *Engine) ListTenants(ctx context.Context, p Page) ([]Tenant, int, error) {
	if e.reg == nil {
		return nil, 0, ErrNoRegistry
	}
	recs, total, err := e.reg.store.ListTenantRecords(ctx, p)
	if err != nil {
		return nil, 0, err
	}
	out := make([]Tenant, 0, len(recs))
	for _, r := range recs {
		t, err := e.reg.decode(r)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, cloneTenant(t))
	}
	return out, total, nil
}

// FollowRegistry calls fn with every registered tenant, then again with
// each tenant changed by any engine sharing the Store (removed is set for
// a deleted tenant, whose ID alone is given), until ctx ends. It is how a
// host keeps per-connection work in step with the registry: an LDAP
// syncer per LDAP connection, started, changed and stopped as connections
// are. It reads the revision feed every Config.FollowInterval, and at once
// when a Store that is a RegistryWatcher (sqlstore on PostgreSQL with Config.Listen) hears a
// write commit on any replica; what it reads also refreshes the engine's
// cache, so every request sees the change. An error from fn stops it and
// is returned.
func (e *Engine) FollowRegistry(ctx context.Context, fn func(ctx context.Context, t Tenant, removed bool) error) error {
	if e.reg == nil {
		return ErrNoRegistry
	}
	r := e.reg
	if err := r.refresh(ctx, e.now(), true); err != nil {
		return err
	}
	r.mu.Lock()
	cursor := r.rev
	r.mu.Unlock()
	for off := 0; ; {
		ts, total, err := e.ListTenants(ctx, Page{Offset: off, Limit: 500})
		if err != nil {
			return err
		}
		for _, t := range ts {
			if err := fn(ctx, t, false); err != nil {
				return err
			}
		}
		off += len(ts)
		if len(ts) == 0 || off >= total {
			break
		}
	}
	tick := e.followEvery
	heard := make(chan struct{}, 1)
	if w, ok := r.store.(RegistryWatcher); ok {
		stop, live := w.WatchRegistry(func(string) {
			select {
			case heard <- struct{}{}:
			default:
			}
		})
		defer stop()
		if live {
			// Notifications carry the changes (and say when some may have
			// been missed): the feed is read as a fallback only.
			tick = max(tick, liveFollowFallback)
		}
	}
	for {
		r.mu.Lock()
		wake := r.watch
		r.mu.Unlock()
		changes, err := r.store.RegistryChanges(ctx, cursor, 1000)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			e.log.WarnContext(ctx, "provision: follow the registry", "err", err)
		}
		for _, c := range changes {
			cursor = c.Rev
			r.forget(c.TenantID, c.Rev)
			t, err := e.lookupTenant(ctx, c.TenantID)
			switch {
			case errors.Is(err, ErrUnknownTenant):
				err = fn(ctx, Tenant{ID: c.TenantID}, true)
			case err != nil:
				return err
			default:
				err = fn(ctx, cloneTenant(t), false)
			}
			if err != nil {
				return err
			}
		}
		if len(changes) == 1000 {
			continue
		}
		timer := time.NewTimer(tick)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-wake:
		case <-heard:
		case <-timer.C:
		}
		timer.Stop()
	}
}

func (e *Engine) isDeclared(id string) bool {
	e.mu.RLock()
	_, ok := e.tenants[id]
	e.mu.RUnlock()
	return ok
}

// modifyRegistered reads the registered tenant id in a transaction, lets
// fn change it, validates and stores it with its connection events.
func (e *Engine) modifyRegistered(ctx context.Context, id, actor string, version int64, mayCreate bool, fn func(cur *Tenant) error) (Tenant, error) {
	if e.reg == nil {
		return Tenant{}, ErrNoRegistry
	}
	if id == "" {
		return Tenant{}, &ValidationError{Field: "tenant.id", Reason: "required"}
	}
	if err := checkID("tenant.id", id); err != nil {
		return Tenant{}, err
	}
	if e.isDeclared(id) {
		return Tenant{}, fmt.Errorf("%w: %q", ErrDeclared, id)
	}
	var out *Tenant
	var rev int64
	tmp := &Tenant{ID: id}
	err := e.atomically(ctx, scope{origin: Origin{TenantID: id, Actor: actor}, tenant: tmp}, version != 0, func(ctx context.Context, tx Store, rec *recorder) error {
		reg, ok := tx.(Registry)
		if !ok {
			return ErrNoRegistry
		}
		var old *Tenant
		var oldVersion int64
		r, err := reg.GetTenantRecord(ctx, id)
		switch {
		case errors.Is(err, ErrNotFound):
			if !mayCreate {
				return fmt.Errorf("%w: %q is not registered", ErrUnknownTenant, id)
			}
		case err != nil:
			return err
		default:
			if old, err = e.reg.decode(r); err != nil {
				return err
			}
			oldVersion = r.Version
		}
		if version != 0 && version != oldVersion {
			return fmt.Errorf("%w: tenant %q is at version %d, not %d", ErrVersionConflict, id, oldVersion, version)
		}
		cur := &Tenant{ID: id}
		if old != nil {
			c := cloneTenant(old)
			cur = &c
		}
		if err := fn(cur); err != nil {
			return err
		}
		cur.ID = id
		if err := e.normalizeRegistered(cur); err != nil {
			return err
		}
		for _, d := range cur.VerifiedDomains {
			owner, err := reg.TenantByDomain(ctx, d)
			if err == nil && owner != id {
				return &DomainError{Domain: d, Owner: owner}
			}
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			if owner := e.declaredDomainOwner(d); owner != "" {
				return &DomainError{Domain: d, Owner: owner}
			}
		}
		enc, err := e.reg.encode(*cur)
		if err != nil {
			return err
		}
		if old != nil && samePlain(cur, old) {
			out = old // nothing changed: no write, no event
			return nil
		}
		stored, err := reg.PutTenantRecord(ctx, enc, oldVersion)
		if err != nil {
			if errors.Is(err, ErrAlreadyExists) {
				return fmt.Errorf("provision: tenant %q: a verified domain or a SCIM token is held by another tenant: %w", id, err)
			}
			return err
		}
		rev = stored.Rev
		saved, err := e.reg.decode(stored)
		if err != nil {
			return err
		}
		out = saved
		recordConnectionChanges(rec, old, saved, actor)
		return nil
	})
	if err != nil {
		return Tenant{}, err
	}
	if rev != 0 {
		e.reg.forget(id, rev)
	}
	return cloneTenant(out), nil
}

// samePlain reports whether two tenants encode alike, secrets compared
// in clear (sealing is randomized, so sealed bodies always differ).
func samePlain(a, b *Tenant) bool {
	x, errX := encodePlain(*a)
	y, errY := encodePlain(*b)
	return errX == nil && errY == nil && string(x) == string(y)
}

// encodePlain encodes t as encode does, with secrets in clear: only to
// compare two tenants, never stored.
func encodePlain(t Tenant) ([]byte, error) {
	t = cloneTenant(&t)
	var secrets []string
	if t.Webhook != nil {
		secrets = append(secrets, t.Webhook.Secret.Reveal())
		t.Webhook.Secret = Secret{}
	}
	for i := range t.Connections {
		if l := t.Connections[i].LDAP; l != nil {
			secrets = append(secrets, l.BindPassword.Reveal(), l.TLSClientKey.Reveal())
			l.BindPassword, l.TLSClientKey = Secret{}, Secret{}
		}
	}
	rec, err := (&registry{sealer: &sealer{}}).encode(t)
	if err != nil {
		return nil, err
	}
	return append(rec.Body, []byte(strings.Join(secrets, "\x00"))...), nil
}

func recordConnectionChanges(rec *recorder, old, cur *Tenant, actor string) {
	was := map[string]Connection{}
	if old != nil {
		for _, c := range old.Connections {
			was[c.ID] = c
		}
	}
	for _, c := range cur.Connections {
		c := c
		o := Origin{TenantID: cur.ID, ConnectionID: c.ID, Actor: actor}
		prev, ok := was[c.ID]
		delete(was, c.ID)
		switch {
		case !ok:
			rec.add(Change{Kind: ConnectionActivated, Origin: o, Connection: &c})
		case !sameConnection(prev, c):
			rec.add(Change{Kind: ConnectionUpdated, Origin: o, Connection: &c, Fields: connectionFields(prev, c)})
		}
	}
	if old != nil {
		for _, c := range old.Connections {
			if _, ok := was[c.ID]; ok {
				c := c
				rec.add(Change{Kind: ConnectionDeleted, Origin: Origin{TenantID: cur.ID, ConnectionID: c.ID, Actor: actor}, Connection: &c})
			}
		}
	}
}

func sameConnection(a, b Connection) bool { return len(connectionFields(a, b)) == 0 }

// connectionFields names the settings that differ (secrets compared in
// clear, never shown).
func connectionFields(a, b Connection) []string {
	var f []string
	add := func(name string, same bool) {
		if !same {
			f = append(f, name)
		}
	}
	add("name", a.Name == b.Name)
	add("kind", a.Kind == b.Kind)
	add("match", slices.Equal(a.Match, b.Match))
	add("pairedWith", a.PairedWith == b.PairedWith)
	add("disabled", a.Disabled == b.Disabled)
	add("domains", slices.Equal(a.Domains, b.Domains))
	add("scim", reflect.DeepEqual(a.SCIM, b.SCIM))
	add("saml", reflect.DeepEqual(a.SAML, b.SAML))
	add("ldap", reflect.DeepEqual(a.LDAP, b.LDAP))
	add("jit", reflect.DeepEqual(a.JIT, b.JIT))
	return f
}

// normalizeRegistered lower-cases domains and checks what a registered
// tenant must satisfy beyond validateTenant.
func (e *Engine) normalizeRegistered(t *Tenant) error {
	if t.Adopt != nil {
		return &ValidationError{Field: "tenant.adopt", Reason: "a registered tenant cannot carry an Adopt function (it is not data)"}
	}
	var doms []string
	for _, d := range t.VerifiedDomains {
		n := normalizeDomain(d)
		if !validDomain(n) {
			return &ValidationError{Field: "verifiedDomains", Reason: fmt.Sprintf("%q is not a domain name", d)}
		}
		if !slices.Contains(doms, n) {
			doms = append(doms, n)
		}
	}
	t.VerifiedDomains = doms
	for i := range t.Connections {
		c := &t.Connections[i]
		if err := checkID("connection.id", c.ID); err != nil {
			return err
		}
		var cd []string
		for _, d := range c.Domains {
			n := normalizeDomain(d)
			if !validDomain(n) {
				return &ValidationError{Field: "connection.domains", Reason: fmt.Sprintf("connection %q: %q is not a domain name", c.ID, d)}
			}
			if !coveredBy(n, doms) {
				return &ValidationError{Field: "connection.domains", Reason: fmt.Sprintf("connection %q: domain %q is not one of the tenant's verified domains %v", c.ID, n, doms)}
			}
			cd = append(cd, n)
		}
		c.Domains = cd
		if err := validateSettings(*c); err != nil {
			return err
		}
	}
	if err := validateTenant(*t); err != nil {
		return err
	}
	seen := map[TokenHash]string{}
	for _, c := range t.Connections {
		if c.SCIM == nil {
			continue
		}
		for _, h := range c.SCIM.TokenHashes {
			if other, ok := seen[h]; ok && other != c.ID {
				return &ValidationError{Field: "connection.scim.tokenHashes", Reason: fmt.Sprintf("connections %q and %q share a token", other, c.ID)}
			}
			seen[h] = c.ID
		}
	}
	if _, err := compileRules(t.AccessRules); err != nil {
		return err
	}
	return nil
}

// validateSettings checks that a connection's protocol settings fit its
// kind.
func validateSettings(c Connection) error {
	bad := func(field, reason string) error {
		return &ValidationError{Field: "connection." + field, Reason: fmt.Sprintf("connection %q: %s", c.ID, reason)}
	}
	if c.SCIM != nil && c.Kind != KindSCIM {
		return bad("scim", "SCIM settings on a connection of kind "+string(c.Kind))
	}
	if c.SAML != nil && c.Kind != KindSAML {
		return bad("saml", "SAML settings on a connection of kind "+string(c.Kind))
	}
	if c.LDAP != nil && c.Kind != KindLDAP {
		return bad("ldap", "LDAP settings on a connection of kind "+string(c.Kind))
	}
	switch c.Kind {
	case KindSAML:
		if c.SAML == nil || (c.SAML.IDPMetadataURL == "" && c.SAML.IDPMetadataXML == "") {
			return bad("saml.idpMetadataURL", "a SAML connection needs its IdP metadata (idpMetadataURL or idpMetadataXML)")
		}
		if u := c.SAML.IDPMetadataURL; u != "" && !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
			return bad("saml.idpMetadataURL", fmt.Sprintf("%q is not an http(s) URL", u))
		}
	case KindLDAP:
		if c.LDAP == nil || c.LDAP.URL == "" {
			return bad("ldap.url", "an LDAP connection needs a URL")
		}
		if !strings.HasPrefix(c.LDAP.URL, "ldap://") && !strings.HasPrefix(c.LDAP.URL, "ldaps://") {
			return bad("ldap.url", fmt.Sprintf("%q is not an ldap:// or ldaps:// URL", c.LDAP.URL))
		}
		if c.LDAP.BaseDN == "" {
			return bad("ldap.baseDN", "an LDAP connection needs a base DN")
		}
		if c.LDAP.Interval < 0 {
			return bad("ldap.interval", "the interval must not be negative")
		}
	}
	if c.JIT != nil {
		for _, d := range c.JIT.AllowedEmailDomains {
			if !validDomain(normalizeDomain(d)) {
				return bad("jit.allowedEmailDomains", fmt.Sprintf("%q is not a domain name", d))
			}
		}
	}
	return nil
}

// checkID refuses ids that cannot be a URL path segment or a key.
func checkID(field, id string) error {
	if id == "" {
		return &ValidationError{Field: field, Reason: "required"}
	}
	if len(id) > 64 {
		return &ValidationError{Field: field, Reason: fmt.Sprintf("%q is longer than 64 characters", id)}
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return &ValidationError{Field: field, Reason: fmt.Sprintf("%q may hold only letters, digits, '-', '_' and '.'", id)}
		}
	}
	return nil
}

// putRegisteredRules stores new access rules on the registered tenant,
// through tx, and returns the record's new revision.
func (e *Engine) putRegisteredRules(ctx context.Context, tx Store, id string, rules []AccessRule) (int64, error) {
	reg, ok := tx.(Registry)
	if !ok || e.reg == nil {
		return 0, ErrNoRegistry
	}
	r, err := reg.GetTenantRecord(ctx, id)
	if err != nil {
		return 0, err
	}
	t, err := e.reg.decode(r)
	if err != nil {
		return 0, err
	}
	t.AccessRules = slices.Clone(rules)
	enc, err := e.reg.encode(*t)
	if err != nil {
		return 0, err
	}
	stored, err := reg.PutTenantRecord(ctx, enc, r.Version)
	if err != nil {
		return 0, err
	}
	return stored.Rev, nil
}

// liveFollowFallback is how often FollowRegistry reads the revision feed
// when a RegistryWatcher notifies it of every write.
const liveFollowFallback = 30 * time.Second
