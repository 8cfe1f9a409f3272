package webhook_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/idprov/idprov/provision/webhook"
)

func TestVerify(t *testing.T) {
	const secret = "whsec_test_secret_0123456789"
	body := []byte(`{"seq":1,"kind":"user.deactivated"}`)
	at := time.Unix(1_800_000_000, 0)
	good := webhook.Sign(secret, at, body)
	other := webhook.Sign("whsec_another_secret_000000", at, body)
	sig := good[strings.Index(good, "v1="):]
	for _, tc := range []struct {
		name      string
		secret    string
		header    string
		body      string
		now       time.Time
		tolerance time.Duration
		want      error
	}{
		{"valid", secret, good, string(body), at, 0, nil},
		{"valid at the edge of the tolerance", secret, good, string(body), at.Add(5 * time.Minute), 5 * time.Minute, nil},
		{"clock skew within tolerance", secret, good, string(body), at.Add(-4 * time.Minute), 5 * time.Minute, nil},
		{"spaces after commas", secret, strings.ReplaceAll(good, ",", ", "), string(body), at, 0, nil},
		{"one of two v1 values matches (rotation)", secret, other + "," + sig, string(body), at, 0, nil},
		{"unknown scheme ignored", secret, good + ",v0=abc", string(body), at, 0, nil},
		{"wrong secret", "whsec_wrong_secret_000000000", good, string(body), at, 0, webhook.ErrBadSignature},
		{"tampered body", secret, good, `{"seq":1,"kind":"user.reactivated"}`, at, 0, webhook.ErrBadSignature},
		{"timestamp changed", secret, strings.Replace(good, "t=1800000000", "t=1800000300", 1), string(body), at, 0, webhook.ErrBadSignature},
		{"stale", secret, good, string(body), at.Add(6 * time.Minute), 5 * time.Minute, webhook.ErrStale},
		{"default tolerance is 5m", secret, good, string(body), at.Add(5*time.Minute + time.Second), 0, webhook.ErrStale},
		{"from the future", secret, good, string(body), at.Add(-time.Hour), 5 * time.Minute, webhook.ErrStale},
		{"empty header", secret, "", string(body), at, 0, webhook.ErrMalformedHeader},
		{"no timestamp", secret, sig, string(body), at, 0, webhook.ErrMalformedHeader},
		{"no signature", secret, "t=1800000000", string(body), at, 0, webhook.ErrMalformedHeader},
		{"non-hex signature", secret, "t=1800000000,v1=zz", string(body), at, 0, webhook.ErrMalformedHeader},
		{"short signature", secret, "t=1800000000,v1=00ff", string(body), at, 0, webhook.ErrMalformedHeader},
		{"two timestamps", secret, good + ",t=1", string(body), at, 0, webhook.ErrMalformedHeader},
		{"garbage", secret, "Bearer abc", string(body), at, 0, webhook.ErrMalformedHeader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := webhook.Verify(tc.secret, tc.header, []byte(tc.body), tc.now, tc.tolerance)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
	if err := webhook.Verify("", good, body, at, 0); err == nil {
		t.Fatal("Verify with an empty secret succeeded")
	}
}

func TestNewSecret(t *testing.T) {
	a, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := webhook.NewSecret()
	if a == b || !strings.HasPrefix(a, "whsec_") || len(a) != len("whsec_")+64 {
		t.Fatalf("NewSecret = %q, %q", a, b)
	}
}
