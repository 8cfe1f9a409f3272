package provision

import (
	"context"
	"errors"
)

// UpdateTenant declares t like SetTenant and records in t's event log the
// connections it adds (connection.activated) and removes
// (connection.deleted), compared with the tenant as declared before. It
// is how a host changes a tenant's connections at run time, so that its
// consumers (an audit trail, a webhook) hear of it; SetTenant is for
// configuration at start-up. actor names who made the change.
func (e *Engine) UpdateTenant(ctx context.Context, t Tenant, actor string) error {
	old, err := e.Tenant(ctx, t.ID)
	if err != nil && !errors.Is(err, ErrUnknownTenant) {
		return err
	}
	if err := e.SetTenant(t); err != nil {
		return err
	}
	was := map[string]Connection{}
	for _, c := range old.Connections {
		was[c.ID] = c
	}
	var changes []Change
	for _, c := range t.Connections {
		if _, ok := was[c.ID]; ok {
			delete(was, c.ID)
			continue
		}
		c := c
		changes = append(changes, Change{Kind: ConnectionActivated, Origin: Origin{TenantID: t.ID, ConnectionID: c.ID, Actor: actor}, Connection: &c})
	}
	for _, c := range old.Connections {
		if _, ok := was[c.ID]; ok {
			c := c
			changes = append(changes, Change{Kind: ConnectionDeleted, Origin: Origin{TenantID: t.ID, ConnectionID: c.ID, Actor: actor}, Connection: &c})
		}
	}
	if len(changes) == 0 {
		return nil
	}
	s, err := e.scope(ctx, Origin{TenantID: t.ID, Actor: actor})
	if err != nil {
		return err
	}
	return e.atomically(ctx, s, false, func(ctx context.Context, tx Store, rec *recorder) error {
		for _, c := range changes {
			rec.add(c)
		}
		return nil
	})
}
