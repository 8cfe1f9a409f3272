package scim

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/idprov/idprov/provision"
)

// ETags: a resource's Version is its entity tag, written W/"<version>".
// If-Match on PUT, PATCH and DELETE (and on a Bulk operation's version)
// pins the change to that version: the engine refuses it with a version
// conflict, answered 412, and never retries it. If-None-Match on a GET of
// one resource answers 304 when the tag still matches. A group's version
// does not move when only its members change, so a GET that returns the
// members never answers 304.

// parseETags reads an If-Match or If-None-Match value: "*" (any), or a
// list of entity tags, weak or strong. ok is false when a tag is not one
// of this server's.
func parseETags(v string) (any bool, versions []int64, ok bool) {
	v = strings.TrimSpace(v)
	if v == "*" {
		return true, nil, true
	}
	for t := range strings.SplitSeq(v, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		t = strings.Trim(strings.TrimPrefix(t, "W/"), `"`)
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil || n <= 0 {
			return false, nil, false
		}
		versions = append(versions, n)
	}
	return false, versions, len(versions) > 0
}

var errPrecondition = &scimError{status: http.StatusPreconditionFailed, detail: "The resource changed since the version given in If-Match."}

// precondition reads If-Match for a change of resource id: the version
// the change must find, or any. With several tags the current version is
// read first: one of the tags must name it, and the change is then pinned
// to it.
func (h *Handler) precondition(r *http.Request, st *request, k kind, id string) (provision.Precondition, *scimError) {
	im := r.Header.Get("If-Match")
	if strings.TrimSpace(im) == "" {
		return provision.Precondition{}, nil
	}
	anyTag, versions, ok := parseETags(im)
	switch {
	case !ok:
		return provision.Precondition{}, &scimError{status: http.StatusPreconditionFailed, detail: "If-Match does not name a version of this resource."}
	case anyTag:
		return provision.Precondition{}, nil
	case len(versions) == 1:
		return provision.Precondition{Version: versions[0]}, nil
	}
	var cur int64
	if k == groupKind {
		g, err := h.engine.GetGroup(r.Context(), st.origin, id)
		if err != nil {
			return provision.Precondition{}, h.toSCIM(st, err)
		}
		cur = g.Version
	} else {
		u, err := h.engine.GetUser(r.Context(), st.origin, id)
		if err != nil {
			return provision.Precondition{}, h.toSCIM(st, err)
		}
		cur = u.Version
	}
	if !slices.Contains(versions, cur) {
		return provision.Precondition{}, errPrecondition
	}
	return provision.Precondition{Version: cur}, nil
}

// notModified reports whether a GET's If-None-Match names version, and
// then makes the answer 304.
func (st *request) notModified(version int64) bool {
	if st.ifNoneMatch == "" {
		return false
	}
	anyTag, versions, ok := parseETags(st.ifNoneMatch)
	if !ok || !(anyTag || slices.Contains(versions, version)) {
		return false
	}
	st.status304 = true
	return true
}
