package fallback_test

import (
	"fmt"

	"github.com/rebound-grpc/rebound/fallback"
)

func ExampleKey() {
	req := []byte{0x08, 0x2a} // deterministic marshal of the request
	a := fallback.Key("/pkg.Svc/Get", req, []string{"tenant-a", "Bearer secret-token"})
	b := fallback.Key("/pkg.Svc/Get", req, []string{"tenant-b", "Bearer secret-token"})
	fmt.Println(a)
	fmt.Println(a == b)
	// Output:
	// /pkg.Svc/Get:aEBt5Os9Qvzci6-l9azG_-QH2lmqjc3vARK9TWEzbYs
	// false
}

func ExampleAppendKey() {
	buf := make([]byte, 0, 128) // reused across calls: no allocation
	buf = fallback.AppendKey(buf[:0], "/pkg.Svc/Get", []byte{0x08, 0x2a}, nil)
	fmt.Println(len(buf) == len("/pkg.Svc/Get:")+fallback.KeyDigestLen)
	// Output:
	// true
}
