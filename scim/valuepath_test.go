package scim

import (
	"reflect"
	"testing"

	fp "github.com/scim2/filter-parser/v2"
)

// TestValuePathMatchesParser checks the fast path of PATCH value keys
// against the general parser, key by key.
func TestValuePathMatchesParser(t *testing.T) {
	for _, key := range []string{
		"title", "userName", "name.givenName", "x-custom_1", "a",
		"emails[type eq \"work\"].value", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
		"1title", "", "name.", ".x", "a.b.c", "na me", "name.given-Name",
	} {
		got, gerr := valuePath(key)
		want, werr := fp.ParsePath([]byte(key))
		if (gerr == nil) != (werr == nil) {
			t.Errorf("%q: error %v, the parser's %v", key, gerr, werr)
			continue
		}
		if gerr == nil && !reflect.DeepEqual(got, want) {
			t.Errorf("%q: %#v, the parser's %#v", key, got, want)
		}
	}
}
