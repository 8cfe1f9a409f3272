package scim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	elimity "github.com/elimity-com/scim"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/provision/filter"
)

const searchRequestURN = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"

// searchRequest is the body of POST /.search (RFC 7644 section 3.4.3).
type searchRequest struct {
	Schemas            []string        `json:"schemas"`
	Attributes         []string        `json:"attributes"`
	ExcludedAttributes []string        `json:"excludedAttributes"`
	Filter             string          `json:"filter"`
	SortBy             string          `json:"sortBy"`
	SortOrder          string          `json:"sortOrder"`
	StartIndex         json.RawMessage `json:"startIndex"`
	Count              json.RawMessage `json:"count"`
}

// prepareSearch reads a SearchRequest into st, as the query of a GET
// would be, and returns the query string (startIndex, count) elimity
// pages the equivalent GET by. The filter is parsed by idprov's parser,
// like a GET's: elimity's .search validation refuses id, externalId and
// meta filters.
func (h *Handler) prepareSearch(st *request, body []byte) (string, *scimError) {
	var sr searchRequest
	if !isObject(body) {
		return "", badSyntax("The request body must be a SearchRequest object.")
	}
	if err := json.Unmarshal(body, &sr); err != nil {
		return "", badSyntax("The request body is not a SearchRequest.")
	}
	if sr.Schemas != nil {
		found := false
		for _, s := range sr.Schemas {
			found = found || s == searchRequestURN
		}
		if !found {
			return "", badSyntax("A search request's schemas must be [\"" + searchRequestURN + "\"].")
		}
	}
	st.proj = parseProjection(sr.Attributes, sr.ExcludedAttributes)
	if serr := st.setSort(sr.SortBy, sr.SortOrder); serr != nil {
		return "", serr
	}
	if serr := h.setFilter(st, strings.TrimSpace(sr.Filter)); serr != nil {
		return "", serr
	}
	q := url.Values{}
	for name, raw := range map[string]json.RawMessage{"startIndex": sr.StartIndex, "count": sr.Count} {
		if len(raw) == 0 || string(raw) == "null" {
			continue
		}
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			var s string
			if json.Unmarshal(raw, &s) != nil {
				return "", badValue(name + " must be an integer.")
			}
			n = json.Number(s)
		}
		if _, err := strconv.Atoi(n.String()); err != nil {
			return "", badValue(name + " must be an integer.")
		}
		q.Set(name, n.String())
	}
	return q.Encode(), nil
}

// rootQuery is a filter of a query of the server root, parsed for each
// resource type; a type whose attributes the filter does not name is
// skipped.
type rootQuery struct {
	users, groups         filter.Expr
	skipUsers, skipGroups bool
}

// rootHandler answers GET / and POST /.search: users, then groups, paged
// as one list.
type rootHandler struct{ h *Handler }

// GetAll implements elimity.RootQueryHandler.
func (rh rootHandler) GetAll(r *http.Request, params elimity.ListRequestParams) (elimity.Page, error) {
	h, st := rh.h, stateOf(r)
	if st.err != nil {
		return elimity.Page{}, st.err.elimity()
	}
	if st.sortBy != "" {
		return elimity.Page{}, h.fail(st, badValue("A query of the server root cannot be sorted; query /Users or /Groups."))
	}
	rq := st.root
	if rq == nil {
		rq = &rootQuery{}
	}
	ctx := r.Context()
	offset, limit := params.StartIndex-1, params.Count
	var out []any
	total := 0
	if !rq.skipUsers {
		users, n, err := h.engine.ListUsers(ctx, st.origin, provision.Query{Filter: rq.users, Page: provision.Page{Offset: offset, Limit: limit}})
		if err != nil {
			return elimity.Page{}, h.fail(st, err)
		}
		for i := range users {
			out = append(out, h.userJSON(&users[i], st.proj))
		}
		total += n
		offset = max(0, offset-n)
		limit -= len(users)
	}
	if !rq.skipGroups {
		groups, n, err := h.listGroups(ctx, st, rq.groups, offset, limit)
		if err != nil {
			return elimity.Page{}, h.fail(st, err)
		}
		out = append(out, groups...)
		total += n
	}
	st.setList(out, params.StartIndex, total)
	return elimity.Page{TotalResults: total, Resources: []elimity.Resource{}}, nil
}

// serviceProviderConfig renders /ServiceProviderConfig: what this
// handler does, with its limits (elimity's advertises bulk, sort, etag
// and changePassword as unsupported, whatever the server does).
func (h *Handler) serviceProviderConfig() []byte {
	loc := "ServiceProviderConfig"
	if h.baseURL != "" {
		loc = h.baseURL + "/" + loc
	}
	b, _ := json.Marshal(map[string]any{
		"schemas":          []string{"urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"},
		"documentationUri": "https://github.com/idprov/idprov#scim-quick-start",
		"patch":            map[string]any{"supported": true},
		"bulk":             map[string]any{"supported": true, "maxOperations": h.bulk.MaxOperations, "maxPayloadSize": h.bulk.MaxPayloadSize},
		"filter":           map[string]any{"supported": true, "maxResults": h.maxResults},
		"changePassword":   map[string]any{"supported": h.setPassword != nil},
		"sort":             map[string]any{"supported": true},
		"etag":             map[string]any{"supported": true},
		"authenticationSchemes": []map[string]any{{
			"type":        "oauthbearertoken",
			"name":        "OAuth Bearer Token",
			"description": "Authentication with a long-lived bearer token per SCIM directory.",
			"specUri":     "https://www.rfc-editor.org/info/rfc6750",
			"primary":     true,
		}},
		"meta": map[string]any{"resourceType": "ServiceProviderConfig", "location": loc},
	})
	return b
}

func (h *Handler) serveSPC(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/scim+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(h.spc)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(h.spc)
}

// isObject reports whether body is a JSON object (as far as its first
// byte tells: json.Unmarshal then refuses what is not valid or is
// followed by anything but white space). A "null" body decodes into a
// struct without error, and must not mean an empty request.
func isObject(body []byte) bool {
	b := bytes.TrimLeft(body, " \t\r\n")
	return len(b) > 0 && b[0] == '{'
}
