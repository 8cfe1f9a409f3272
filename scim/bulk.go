package scim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Bulk (RFC 7644 section 3.7): POST /Bulk runs its operations in order,
// each as the request it stands for (same validation, dialects, engine
// calls and answers), and answers 200 with each operation's status. An
// operation's "bulkId:x" references (in its path, or as a string value in
// its data, such as a member's value) name the resource a POST of the same
// request created with bulkId x; an operation whose reference is not
// resolved yet waits for the POST that resolves it, and one that cannot be
// resolved (unknown bulkId, a failed POST, a cycle) answers 409. An
// operation's version is its If-Match. failOnErrors stops the request
// after that many failed operations. Operations are independent: each
// commits on its own, as the RFC asks.

const (
	bulkRequestURN  = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
	bulkResponseURN = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
)

type bulkRequest struct {
	Schemas      []string    `json:"schemas"`
	FailOnErrors *int        `json:"failOnErrors"`
	Operations   []bulkOpReq `json:"Operations"`
}

type bulkOpReq struct {
	Method  string          `json:"method"`
	BulkID  string          `json:"bulkId"`
	Version string          `json:"version"`
	Path    string          `json:"path"`
	Data    json.RawMessage `json:"data"`
}

type bulkOpResult struct {
	Method   string          `json:"method"`
	BulkID   string          `json:"bulkId,omitempty"`
	Version  string          `json:"version,omitempty"`
	Location string          `json:"location,omitempty"`
	Status   string          `json:"status"`
	Response json.RawMessage `json:"response,omitempty"`
}

type bulkResponse struct {
	Schemas    []string       `json:"schemas"`
	Operations []bulkOpResult `json:"Operations"`
}

const bulkRef = "bulkId:"

// refs returns the bulkIds op refers to.
func (op *bulkOpReq) refs() []string {
	var out []string
	if i := strings.Index(op.Path, bulkRef); i >= 0 {
		id, _, _ := strings.Cut(op.Path[i+len(bulkRef):], "/")
		out = append(out, id)
	}
	d := op.Data
	for {
		i := bytes.Index(d, []byte(`"`+bulkRef))
		if i < 0 {
			return out
		}
		d = d[i+1+len(bulkRef):]
		j := bytes.IndexByte(d, '"')
		if j < 0 {
			return out
		}
		out = append(out, string(d[:j]))
		d = d[j:]
	}
}

func (h *Handler) serveBulk(w http.ResponseWriter, r *http.Request, st *request, body []byte) {
	var req bulkRequest
	if err := json.Unmarshal(body, &req); err != nil || !isObject(body) {
		writeError(w, badSyntax("The request body is not a BulkRequest."), 0)
		return
	}
	if len(req.Schemas) > 0 {
		found := false
		for _, s := range req.Schemas {
			found = found || s == bulkRequestURN
		}
		if !found {
			writeError(w, badSyntax(`A bulk request's schemas must be ["`+bulkRequestURN+`"].`), 0)
			return
		}
	}
	if req.Operations == nil {
		writeError(w, badValue("A Bulk request needs an Operations list."), 0)
		return
	}
	if len(req.Operations) > h.bulk.MaxOperations {
		writeError(w, &scimError{status: http.StatusRequestEntityTooLarge, detail: fmt.Sprintf("A Bulk request may hold at most %d operations.", h.bulk.MaxOperations)}, 0)
		return
	}
	if req.FailOnErrors != nil && *req.FailOnErrors < 1 {
		writeError(w, badValue("failOnErrors must be a positive integer."), 0)
		return
	}
	// Which POST defines which bulkId.
	defined := map[string]int{}
	for i, op := range req.Operations {
		if op.BulkID == "" {
			continue
		}
		if _, dup := defined[op.BulkID]; dup {
			writeError(w, badValue(fmt.Sprintf("The bulkId %q is used by more than one operation.", op.BulkID)), 0)
			return
		}
		defined[op.BulkID] = i
	}

	results := make([]*bulkOpResult, len(req.Operations))
	resolved := map[string]string{} // bulkId -> resource id
	failedIDs := map[string]bool{}
	var order []int // results in the order the operations ran
	failures := 0
	pending := make([]int, len(req.Operations))
	for i := range pending {
		pending[i] = i
	}
	stop := func() bool { return req.FailOnErrors != nil && failures >= *req.FailOnErrors }
	for len(pending) > 0 && !stop() {
		var next []int
		progress := false
		for _, i := range pending {
			if stop() {
				break
			}
			op := &req.Operations[i]
			wait, broken := false, ""
			for _, ref := range op.refs() {
				if _, ok := resolved[ref]; ok {
					continue
				}
				j, ok := defined[ref]
				switch {
				case !ok || failedIDs[ref] || j == i || !strings.EqualFold(req.Operations[j].Method, http.MethodPost):
					broken = ref
				default:
					wait = true
				}
			}
			if wait && broken == "" {
				next = append(next, i)
				continue
			}
			progress = true
			var res *bulkOpResult
			if broken != "" {
				res = bulkFailure(op, &scimError{status: http.StatusConflict, scimType: "invalidValue", detail: fmt.Sprintf("The bulkId %q does not name a resource this request created.", broken)})
			} else {
				res = h.bulkOp(r, st, i, op, resolved)
			}
			results[i] = res
			order = append(order, i)
			if n, _ := strconv.Atoi(res.Status); n >= 400 {
				failures++
				if op.BulkID != "" {
					failedIDs[op.BulkID] = true
				}
			}
		}
		if !progress {
			// A cycle: what is left waits for itself.
			for _, i := range next {
				if stop() {
					break
				}
				op := &req.Operations[i]
				results[i] = bulkFailure(op, &scimError{status: http.StatusConflict, scimType: "invalidValue", detail: "The operation's bulkId references form a cycle."})
				order = append(order, i)
				failures++
				if op.BulkID != "" {
					failedIDs[op.BulkID] = true
				}
			}
			break
		}
		pending = next
	}
	resp := bulkResponse{Schemas: []string{bulkResponseURN}, Operations: make([]bulkOpResult, 0, len(order))}
	for _, i := range order {
		resp.Operations = append(resp.Operations, *results[i])
	}
	b, err := json.Marshal(resp)
	if err != nil {
		writeError(w, &scimError{status: http.StatusInternalServerError, detail: "Internal server error."}, 0)
		return
	}
	w.Header().Set("Content-Type", "application/scim+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

func bulkFailure(op *bulkOpReq, e *scimError) *bulkOpResult {
	return &bulkOpResult{Method: strings.ToUpper(op.Method), BulkID: op.BulkID, Status: strconv.Itoa(e.status), Response: errorBody(e)}
}

// bulkOp runs operation i as its own request.
func (h *Handler) bulkOp(r *http.Request, parent *request, i int, op *bulkOpReq, resolved map[string]string) *bulkOpResult {
	method := strings.ToUpper(strings.TrimSpace(op.Method))
	path, data := op.Path, op.Data
	for _, ref := range op.refs() {
		id := resolved[ref]
		path = strings.ReplaceAll(path, bulkRef+ref, id)
		data = bytes.ReplaceAll(data, []byte(`"`+bulkRef+ref+`"`), []byte(strconv.Quote(id)))
	}
	rt := parseRoute(path)
	switch {
	case method != http.MethodPost && method != http.MethodPut && method != http.MethodPatch && method != http.MethodDelete:
		return bulkFailure(op, badValue("A Bulk operation's method must be POST, PUT, PATCH or DELETE."))
	case rt.ep == epOther || rt.search || rt.item != (method != http.MethodPost):
		return bulkFailure(op, badValue("A Bulk operation's path must be /Users or /Groups for POST, /Users/{id} or /Groups/{id} otherwise."))
	case method == http.MethodPost && op.BulkID == "":
		return bulkFailure(op, badValue("A Bulk POST needs a bulkId."))
	}
	if method == http.MethodDelete || string(data) == "null" {
		data = nil
	}
	st := &request{route: rt, start: h.now(), dir: parent.dir, origin: parent.origin, inBulk: true}
	st.origin.RequestID = parent.origin.RequestID + "." + strconv.Itoa(i+1)
	r2 := r.Clone(r.Context())
	r2.Header.Del("If-None-Match")
	if op.Version != "" {
		r2.Header.Set("If-Match", op.Version)
	} else {
		r2.Header.Del("If-Match")
	}
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	h.serve(rec, r2, st, method, data, "")
	parent.sawStringBool = parent.sawStringBool || st.sawStringBool
	parent.sawUpperOp = parent.sawUpperOp || st.sawUpperOp
	parent.sawLowerOp = parent.sawLowerOp || st.sawLowerOp
	if rec.status < 300 {
		for _, a := range st.dropped {
			parent.drop(a)
		}
	}

	res := &bulkOpResult{Method: method, BulkID: op.BulkID, Status: strconv.Itoa(rec.status)}
	if rec.status >= 400 {
		res.Response = json.RawMessage(bytes.Clone(rec.body.Bytes()))
		return res
	}
	res.Version = rec.header.Get("Etag")
	id := st.resID
	if id == "" && rt.item {
		id, _ = url.PathUnescape(rt.path[strings.LastIndexByte(rt.path, '/')+1:])
	}
	k := userKind
	if rt.ep == epGroups {
		k = groupKind
	}
	if method != http.MethodDelete && id != "" {
		res.Location = h.location(k, id)
	}
	if method == http.MethodPost && op.BulkID != "" && id != "" {
		resolved[op.BulkID] = id
	}
	return res
}
