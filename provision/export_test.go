package provision

import "context"

// Test hooks: what the tests of package provision_test change at run time
// that the public API keeps as configuration.

// SetTenant declares t on e, or replaces it (Config.Tenants at run time).
func SetTenant(e *Engine, t Tenant) error { return e.setTenant(t) }

// RemoveTenant forgets the declared tenant id.
func RemoveTenant(e *Engine, id string) { e.removeTenant(id) }

// RegistryChanged makes e read the registry's revision feed at once.
func RegistryChanged(ctx context.Context, e *Engine) error { return e.registryChanged(ctx) }
