package fallback

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// refKey is an independent, unbuffered implementation of the key encoding.
func refKey(method string, req []byte, scope []string) string {
	return method + ":" + base64.RawURLEncoding.EncodeToString(sumOf(refInput(method, req, scope)))
}

func refInput(method string, req []byte, scope []string) []byte {
	b := []byte(keyDomain)
	b = binary.AppendUvarint(b, uint64(len(method)))
	b = append(b, method...)
	b = binary.AppendUvarint(b, uint64(len(req)))
	b = append(b, req...)
	b = binary.AppendUvarint(b, uint64(len(scope)))
	for _, s := range scope {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

func sumOf(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

func TestKeyFormat(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte{0xa5}, 3*keyHasherBuf+7)
	bigS := strings.Repeat("t", 2*keyHasherBuf+1)
	tests := []struct {
		name   string
		method string
		req    []byte
		scope  []string
	}{
		{name: "empty", method: "", req: nil, scope: nil},
		{name: "plain", method: "/pkg.Svc/Get", req: []byte{8, 1}, scope: []string{"tenant-a"}},
		{name: "large req", method: "/pkg.Svc/Get", req: big, scope: []string{"x"}},
		{name: "large scope", method: "/pkg.Svc/Get", req: []byte{1}, scope: []string{bigS, "", bigS}},
		{name: "large method", method: "/" + bigS + "/M", req: big, scope: []string{bigS}},
		{name: "exactly buffer", method: "/a/b", req: make([]byte, keyHasherBuf), scope: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Key(tt.method, tt.req, tt.scope)
			if want := refKey(tt.method, tt.req, tt.scope); got != want {
				t.Errorf("Key(%q, ...) = %q; want %q", tt.method, got, want)
			}
			prefix := tt.method + ":"
			if !strings.HasPrefix(got, prefix) {
				t.Fatalf("Key(%q, ...) = %q; want prefix %q", tt.method, got, prefix)
			}
			digest := got[len(prefix):]
			if len(digest) != KeyDigestLen {
				t.Errorf("len(digest of Key(%q, ...)) = %d; want %d", tt.method, len(digest), KeyDigestLen)
			}
			if _, err := base64.RawURLEncoding.DecodeString(digest); err != nil {
				t.Errorf("digest %q of Key(%q, ...) is not base64url: %v", digest, tt.method, err)
			}
			if again := string(AppendKey([]byte("pre"), tt.method, tt.req, tt.scope)); again != "pre"+got {
				t.Errorf("AppendKey(\"pre\", %q, ...) = %q; want %q", tt.method, again, "pre"+got)
			}
		})
	}
}

type keyInput struct {
	method string
	req    []byte
	scope  []string
}

func TestKeyDistinct(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		a, b keyInput
	}{
		{"scope split", keyInput{"/p.S/M", nil, []string{"a", "bc"}}, keyInput{"/p.S/M", nil, []string{"ab", "c"}}},
		{"scope trailing empty", keyInput{"/p.S/M", nil, []string{"a"}}, keyInput{"/p.S/M", nil, []string{"a", ""}}},
		{"scope empty vs none", keyInput{"/p.S/M", nil, nil}, keyInput{"/p.S/M", nil, []string{""}}},
		{"scope order", keyInput{"/p.S/M", nil, []string{"a", "b"}}, keyInput{"/p.S/M", nil, []string{"b", "a"}}},
		{"req to scope", keyInput{"/p.S/M", []byte("x"), nil}, keyInput{"/p.S/M", nil, []string{"x"}}},
		{"method to req", keyInput{"/p.S/Mx", nil, nil}, keyInput{"/p.S/M", []byte("x"), nil}},
		{"method", keyInput{"/p.S/A", []byte{1}, nil}, keyInput{"/p.S/B", []byte{1}, nil}},
		{"req", keyInput{"/p.S/M", []byte{1}, nil}, keyInput{"/p.S/M", []byte{2}, nil}},
		{"tenant", keyInput{"/p.S/M", []byte{1}, []string{"tenant-a"}}, keyInput{"/p.S/M", []byte{1}, []string{"tenant-b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ka, kb := Key(tt.a.method, tt.a.req, tt.a.scope), Key(tt.b.method, tt.b.req, tt.b.scope)
			if ka == kb {
				t.Errorf("Key(%q, %q, %q) = Key(%q, %q, %q) = %q; want distinct keys",
					tt.a.method, tt.a.req, tt.a.scope, tt.b.method, tt.b.req, tt.b.scope, ka)
			}
		})
	}
}

func TestKeyEqual(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		a, b keyInput
	}{
		{"nil and empty req", keyInput{"/p.S/M", nil, nil}, keyInput{"/p.S/M", []byte{}, nil}},
		{"nil and empty scope", keyInput{"/p.S/M", nil, nil}, keyInput{"/p.S/M", nil, []string{}}},
		{"same", keyInput{"/p.S/M", []byte{1, 2}, []string{"t"}}, keyInput{"/p.S/M", []byte{1, 2}, []string{"t"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ka, kb := Key(tt.a.method, tt.a.req, tt.a.scope), Key(tt.b.method, tt.b.req, tt.b.scope)
			if ka != kb {
				t.Errorf("Key(%q, %q, %q) = %q; want Key(%q, %q, %q) = %q",
					tt.a.method, tt.a.req, tt.a.scope, ka, tt.b.method, tt.b.req, tt.b.scope, kb)
			}
		})
	}
}

func TestKeyHidesScope(t *testing.T) {
	t.Parallel()
	const secret = "Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.sig"
	k := Key("/pkg.Svc/Get", []byte("req"), []string{"tenant-42", secret})
	for _, s := range []string{secret, "eyJhbGciOiJIUzI1NiJ9", "tenant-42", "req"} {
		if strings.Contains(k, s) {
			t.Errorf("Key(...) = %q contains %q; want no scope or request bytes in plain form", k, s)
		}
	}
}

func TestKeyAllocs(t *testing.T) {
	req := bytes.Repeat([]byte{1}, 2048)
	scope := []string{"tenant-a", "Bearer abcdef"}
	dst := make([]byte, 0, 128)
	AppendKey(dst, "/pkg.Svc/Get", req, scope) // warm the pool
	if n := minAllocs(func() { dst = AppendKey(dst[:0], "/pkg.Svc/Get", req, scope) }); n != 0 {
		t.Errorf("AppendKey allocs/op = %v; want 0", n)
	}
	if n := minAllocs(func() { _ = Key("/pkg.Svc/Get", req, scope) }); n != 1 {
		t.Errorf("Key allocs/op = %v; want 1", n)
	}
}

// minAllocs is the least of 5 testing.AllocsPerRun(100, f) measurements.
// The hasher comes from a sync.Pool, and under the race detector a Put is
// dropped at random one time in four; a GC empties the pool too. An
// unlucky measurement then counts a new hasher (about 3 allocations) for
// more than a third of its runs. The minimum of 5 is what f costs with a
// warm pool.
func minAllocs(f func()) float64 {
	least := testing.AllocsPerRun(100, f)
	for range 4 {
		least = min(least, testing.AllocsPerRun(100, f))
	}
	return least
}

func TestKeyConcurrentSafe(t *testing.T) {
	t.Parallel()
	inputs := make([]keyInput, 64)
	for i := range inputs {
		inputs[i] = keyInput{"/p.S/M", bytes.Repeat([]byte{byte(i)}, i*37), []string{strings.Repeat("s", i*19)}}
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			var buf []byte
			for r := range 200 {
				in := inputs[(g*7+r)%len(inputs)]
				buf = AppendKey(buf[:0], in.method, in.req, in.scope)
				if want := refKey(in.method, in.req, in.scope); string(buf) != want {
					t.Errorf("AppendKey(%q, len %d, ...) = %q; want %q", in.method, len(in.req), buf, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

func FuzzKey(f *testing.F) {
	f.Add("/p.S/M", []byte(nil), "a", "bc", uint8(2), "/p.S/M", []byte(nil), "ab", "c", uint8(2))
	f.Add("/p.S/M", []byte("x"), "", "", uint8(0), "/p.S/M", []byte(nil), "x", "", uint8(1))
	f.Add("/p.S/M", []byte{}, "a", "", uint8(1), "/p.S/M", []byte{}, "a", "", uint8(2))
	f.Add("/a/b", []byte("c"), "tok", "", uint8(1), "/a/bc", []byte(nil), "tok", "", uint8(1))
	f.Add("", []byte(nil), "", "", uint8(0), "", []byte(nil), "", "", uint8(0))
	f.Fuzz(func(t *testing.T, m1 string, r1 []byte, s1a, s1b string, n1 uint8, m2 string, r2 []byte, s2a, s2b string, n2 uint8) {
		scope := func(a, b string, n uint8) []string { return []string{a, b}[:n%3] }
		a := keyInput{m1, r1, scope(s1a, s1b, n1)}
		b := keyInput{m2, r2, scope(s2a, s2b, n2)}
		same := a.method == b.method && bytes.Equal(a.req, b.req) && equalStrings(a.scope, b.scope)

		ka, kb := Key(a.method, a.req, a.scope), Key(b.method, b.req, b.scope)
		if same != (ka == kb) {
			t.Errorf("Key(%q, %q, %q) = %q, Key(%q, %q, %q) = %q; want equal keys only for equal inputs",
				a.method, a.req, a.scope, ka, b.method, b.req, b.scope, kb)
		}
		// The encoding itself must be injective: the digest cannot be
		// trusted to reveal a flaw in it.
		if ia, ib := refInput(a.method, a.req, a.scope), refInput(b.method, b.req, b.scope); same != bytes.Equal(ia, ib) {
			t.Errorf("encodings of %q and %q: equal = %v; want %v", a, b, !same, same)
		}
		if want := refKey(a.method, a.req, a.scope); ka != want {
			t.Errorf("Key(%q, %q, %q) = %q; want %q", a.method, a.req, a.scope, ka, want)
		}
		// No scope value (a secret) and no request bytes appear in the digest part.
		digest := ka[len(a.method)+1:]
		if len(digest) != KeyDigestLen {
			t.Fatalf("len(digest of Key(%q, ...)) = %d; want %d", a.method, len(digest), KeyDigestLen)
		}
		for _, s := range append([]string{string(a.req)}, a.scope...) {
			if len(s) >= 8 && strings.Contains(digest, s) {
				t.Errorf("digest %q of Key(%q, ...) contains input %q", digest, a.method, s)
			}
		}
	})
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

var sinkKey string

func BenchmarkKey(b *testing.B) {
	scope := []string{"tenant-a", "Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.sig"}
	for _, size := range []int{16, 256, 4096} {
		req := bytes.Repeat([]byte{7}, size)
		b.Run("Key/req="+strconv.Itoa(size), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkKey = Key("/pkg.Svc/Get", req, scope)
			}
		})
		b.Run("AppendKey/req="+strconv.Itoa(size), func(b *testing.B) {
			b.ReportAllocs()
			dst := make([]byte, 0, 128)
			for b.Loop() {
				dst = AppendKey(dst[:0], "/pkg.Svc/Get", req, scope)
			}
		})
	}
}
