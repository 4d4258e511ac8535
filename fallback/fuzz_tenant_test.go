package fallback

import (
	"context"
	"slices"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/rebound-grpc/rebound/internal/testpb"
)

// FuzzCacheStepKeyTenants derives keys end to end, from outgoing metadata as
// a call carries it (one or more values per key, or none): two calls get the
// same key exactly when they carry the same values for the scoping keys, so
// distinct tenants never collide, whatever their bytes.
func FuzzCacheStepKeyTenants(f *testing.F) {
	f.Add("a", "bc", uint8(2), "tok", "ab", "c", uint8(2), "tok")
	f.Add("a", "", uint8(1), "", "a", "", uint8(2), "")
	f.Add("", "", uint8(0), "x", "", "", uint8(1), "x")
	f.Add("\x02ab", "", uint8(1), "", "ab", "", uint8(1), "")
	f.Add("a\x00", "b", uint8(2), "t", "a", "\x00b", uint8(2), "t")
	step := NewCacheStep(nil, 0, []string{"x-tenant", "authorization"})
	req := &testpb.EchoRequest{Message: "same"}
	f.Fuzz(func(t *testing.T, t1a, t1b string, n1 uint8, auth1, t2a, t2b string, n2 uint8, auth2 string) {
		vals := func(a, b string, n uint8) []string { return []string{a, b}[:n%3] }
		v1, v2 := vals(t1a, t1b, n1), vals(t2a, t2b, n2)
		ctxOf := func(tenants []string, auth string) context.Context {
			md := metadata.MD{"authorization": {auth}}
			if len(tenants) > 0 {
				md["x-tenant"] = tenants
			}
			return metadata.NewOutgoingContext(context.Background(), md)
		}
		k1, err1 := step.Key(ctxOf(v1, auth1), "/p.S/M", req)
		k2, err2 := step.Key(ctxOf(v2, auth2), "/p.S/M", req)
		if err1 != nil || err2 != nil {
			t.Fatalf("Key() errors = %v, %v; want nil", err1, err2)
		}
		same := slices.Equal(v1, v2) && auth1 == auth2
		if (k1 == k2) != same {
			t.Fatalf("keys of tenants %q/%q and %q/%q equal = %v; want %v", v1, auth1, v2, auth2, k1 == k2, same)
		}
	})
}
