package saml_test

import "testing"

// BenchmarkACSRefusedUnsigned2MBRaisedLimit is the same refusal when the
// host raised MaxResponseBytes to 4 MiB: the body is read, and refused
// before parsing because it holds no signature.
func BenchmarkACSRefusedUnsigned2MBRaisedLimit(b *testing.B) {
	f := newFixture(b, options{idpInitiated: true, maxBytes: 4 << 20})
	postRefused(b, f.h, unsigned2MB(b))
}
