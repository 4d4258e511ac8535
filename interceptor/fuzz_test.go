package interceptor_test

import (
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/rebound-grpc/rebound/interceptor"
)

// FuzzPushback feeds grpc-retry-pushback-ms trailers to the parser: it never
// panics, never returns a delay above the cap, and reads a well-formed value
// exactly; anything else is "do not retry" (-1).
func FuzzPushback(f *testing.F) {
	for _, s := range []string{"0", "1", "250", "300000", "300001", "9223372036854775807", "9223372036854775808",
		"-1", "-0", "+5", " 5", "5 ", "5ms", "0x10", "1e3", "", "٣", "00000000000000000000000000001"} {
		f.Add(s, "", uint8(1))
	}
	f.Add("1", "2", uint8(2))
	f.Add("", "", uint8(0))
	f.Fuzz(func(t *testing.T, v1, v2 string, n uint8) {
		var md metadata.MD
		switch n % 4 {
		case 1:
			md = metadata.MD{interceptor.PushbackKey: {v1}}
		case 2:
			md = metadata.MD{interceptor.PushbackKey: {v1, v2}}
		case 3:
			md = metadata.MD{"other": {v1}}
		}
		d, ok := interceptor.Pushback(md)
		present := n%4 == 1 || n%4 == 2
		if ok != present {
			t.Fatalf("pushback(%v) ok = %v; want %v", md, ok, present)
		}
		if !ok {
			if d != 0 {
				t.Fatalf("pushback(%v) = %v, false; want 0", md, d)
			}
			return
		}
		if d != -1 && (d < 0 || d > interceptor.MaxPushback) {
			t.Fatalf("pushback(%v) = %v; want -1 or within [0, %v]", md, d, interceptor.MaxPushback)
		}
		if n%4 == 2 && d != -1 {
			t.Fatalf("pushback(two values %q, %q) = %v; want -1 (do not retry)", v1, v2, d)
		}
		if n%4 == 1 {
			want := time.Duration(-1)
			if x, err := strconv.ParseInt(v1, 10, 64); err == nil && x >= 0 {
				want = min(time.Duration(x)*time.Millisecond, interceptor.MaxPushback)
				if x > int64(interceptor.MaxPushback/time.Millisecond) {
					want = interceptor.MaxPushback // no overflow for huge values
				}
			}
			if d != want {
				t.Fatalf("pushback(%q) = %v; want %v", v1, d, want)
			}
		}
	})
}
