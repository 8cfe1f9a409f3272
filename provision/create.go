package provision

import "context"

// CreateUserStrict creates a user as CreateUser does, except that a
// retried create (the connection already has a live user with the same
// ExternalID and userName, and the create would change nothing) is a
// *ConflictError (ErrAlreadyExists) whose ExistingID names that user,
// instead of the user itself. It is what a SCIM POST answers: RFC 7644
// section 3.3 requires 409 for a create that conflicts with an existing
// resource; Okta and Microsoft Entra ID then look the user up. A rehire
// or an adoption still succeeds, as with CreateUser.
func (e *Engine) CreateUserStrict(ctx context.Context, o Origin, u User) (User, error) {
	return e.createUserAs(ctx, o, u, true)
}
