package scim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	scimerrors "github.com/elimity-com/scim/errors"

	"github.com/idprov/idprov/provision"
)

// scimError is an answer the handler gives as a SCIM Error body. Its
// detail is written for the identity provider's administrator: never Go
// error text.
type scimError struct {
	status     int
	scimType   string
	detail     string
	retryAfter time.Duration
}

func (e *scimError) Error() string {
	return fmt.Sprintf("scim: %d %s: %s", e.status, e.scimType, e.detail)
}

func (e *scimError) elimity() scimerrors.ScimError {
	return scimerrors.ScimError{ScimType: scimerrors.ScimType(e.scimType), Detail: e.detail, Status: e.status}
}

func badValue(detail string) *scimError {
	return &scimError{status: http.StatusBadRequest, scimType: "invalidValue", detail: detail}
}

func badPath(detail string) *scimError {
	return &scimError{status: http.StatusBadRequest, scimType: "invalidPath", detail: detail}
}

func badSyntax(detail string) *scimError {
	return &scimError{status: http.StatusBadRequest, scimType: "invalidSyntax", detail: detail}
}

// writeError writes e as a SCIM Error.
func writeError(w http.ResponseWriter, e *scimError, retryAfter time.Duration) {
	h := w.Header()
	h.Set("Content-Type", "application/scim+json")
	h.Del("Etag")
	h.Del("Location")
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int((retryAfter+time.Second-1)/time.Second)))
	}
	body := errorBody(e)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.status)
	_, _ = w.Write(body)
}

// errorBody is the SCIM Error JSON of e.
func errorBody(e *scimError) []byte {
	body, _ := json.Marshal(struct {
		Schemas  []string `json:"schemas"`
		ScimType string   `json:"scimType,omitempty"`
		Detail   string   `json:"detail,omitempty"`
		Status   string   `json:"status"`
	}{[]string{"urn:ietf:params:scim:api:messages:2.0:Error"}, e.scimType, e.detail, strconv.Itoa(e.status)})
	return body
}

// fail records the SCIM answer for err on the request and returns it in
// the form elimity expects from a resource handler. The front writes the
// recorded answer whatever elimity makes of it.
func (h *Handler) fail(st *request, err error) error {
	e := h.toSCIM(st, err)
	st.err = e
	return e.elimity()
}

// toSCIM maps an engine error to its SCIM answer.
func (h *Handler) toSCIM(st *request, err error) *scimError {
	var se *scimError
	var ce *provision.ConflictError
	var oe *provision.OwnerError
	var ve *provision.ValidationError
	var me *provision.MembersError
	var he *provision.HeldError
	switch {
	case errors.As(err, &he):
		// Nothing was applied; the retry of the same replace after the
		// application's administrator confirmed the plan succeeds.
		return &scimError{status: http.StatusConflict, detail: fmt.Sprintf("This change would remove %d of the group's %d members and is held for confirmation by the application's administrator (plan %s); retry after it is confirmed.", he.Removing, he.Members, he.PlanID)}
	case errors.As(err, &se):
		return se
	case errors.As(err, &ce):
		what := "resource"
		if st.route.ep == epUsers {
			what = "user"
		} else if st.route.ep == epGroups {
			what = "group"
		}
		d := fmt.Sprintf("A %s with this %s already exists.", what, ce.Field)
		if ce.Field == "externalId" {
			d = fmt.Sprintf("This directory already knows another %s by this externalId.", what)
		}
		if ce.Owner != "" && ce.Owner != st.origin.ConnectionID {
			d = strings.TrimSuffix(d, ".") + fmt.Sprintf(", managed by connection %q.", ce.Owner)
		}
		return &scimError{status: http.StatusConflict, scimType: "uniqueness", detail: d}
	case errors.As(err, &oe):
		return &scimError{status: http.StatusConflict, detail: fmt.Sprintf("The resource is managed by connection %q; this directory may not change it.", oe.Owner)}
	case errors.As(err, &me):
		ids := me.Unknown
		more := ""
		if len(ids) > 10 {
			ids, more = ids[:10], fmt.Sprintf(" and %d more", len(me.Unknown)-10)
		}
		return badValue(fmt.Sprintf("Unknown member ids: %s%s.", strings.Join(ids, ", "), more))
	case errors.As(err, &ve):
		return badValue(fmt.Sprintf("Invalid %s: %s.", ve.Field, ve.Reason))
	case errors.Is(err, provision.ErrNotFound):
		return &scimError{status: http.StatusNotFound, detail: "Resource not found."}
	case errors.Is(err, provision.ErrVersionConflict):
		return &scimError{status: http.StatusPreconditionFailed, detail: "The resource changed since the version given in If-Match."}
	case errors.Is(err, provision.ErrTooMany):
		return &scimError{status: http.StatusBadRequest, scimType: "tooMany", detail: "The filter selects more resources than the server will scan; use an indexed attribute (id, externalId, userName, displayName, emails)."}
	case errors.Is(err, provision.ErrInvalid):
		return badValue("The request is invalid.")
	case errors.Is(err, provision.ErrForbidden), errors.Is(err, provision.ErrUnknownTenant):
		return &scimError{status: http.StatusForbidden, detail: "This directory may not make changes now (its connection is disabled or not declared)."}
	case errors.Is(err, provision.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return &scimError{status: http.StatusServiceUnavailable, detail: "The service is unavailable; retry later.", retryAfter: h.retryAfter}
	case errors.Is(err, errPasswordHook):
		return &scimError{status: http.StatusInternalServerError, detail: "The password could not be set; retry later."}
	}
	h.log.Error("scim: request failed", "tenant", st.origin.TenantID, "connection", st.origin.ConnectionID, "request_id", st.origin.RequestID, "error", err.Error())
	return &scimError{status: http.StatusInternalServerError, detail: "Internal server error."}
}

var errPasswordHook = errors.New("scim: SetPassword failed")
