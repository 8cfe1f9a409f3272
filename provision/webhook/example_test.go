package webhook_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/idprov/idprov/provision/webhook"
)

func ExampleVerify() {
	secret := "whsec_0123456789abcdef"
	body := []byte(`{"seq":7,"kind":"user.deactivated","tenantId":"acme"}`)
	signedAt := time.Unix(1767225600, 0)
	header := webhook.Sign(secret, signedAt, body)
	fmt.Println(header)

	// A minute later, within a 5 minute tolerance.
	fmt.Println(webhook.Verify(secret, header, body, signedAt.Add(time.Minute), 5*time.Minute))
	// A changed body.
	forged := []byte(`{"seq":7,"kind":"user.reactivated","tenantId":"acme"}`)
	fmt.Println(webhook.Verify(secret, header, forged, signedAt, 5*time.Minute))
	// The same request replayed an hour later.
	err := webhook.Verify(secret, header, body, signedAt.Add(time.Hour), 5*time.Minute)
	fmt.Println(errors.Is(err, webhook.ErrStale))
	// Output:
	// t=1767225600,v1=2ae486766b853828bddc761c72f78d7859acdf7dda73786b69a9ecb3d05fb1f2
	// <nil>
	// webhook: signature does not match
	// true
}

// A receiver reads the raw body, verifies it, and only then decodes and
// handles the event.
func ExampleVerify_handler() {
	const secret = "whsec_0123456789abcdef"
	receiver := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read error", http.StatusBadRequest)
			return
		}
		if err := webhook.Verify(secret, r.Header.Get(webhook.SignatureHeader), body, time.Now(), 5*time.Minute); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		// Decode body as a provision.Event; skip it if (tenant, seq) was
		// handled already; handle it; then answer 2xx.
		w.WriteHeader(http.StatusNoContent)
	})

	body := `{"seq":1,"kind":"user.created","tenantId":"acme"}`
	for _, sig := range []string{webhook.Sign(secret, time.Now(), []byte(body)), "t=1,v1=00"} {
		req := httptest.NewRequest(http.MethodPost, "/idprov", strings.NewReader(body))
		req.Header.Set(webhook.SignatureHeader, sig)
		rec := httptest.NewRecorder()
		receiver.ServeHTTP(rec, req)
		fmt.Println(rec.Code)
	}
	// Output:
	// 204
	// 401
}
