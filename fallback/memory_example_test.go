package fallback_test

import (
	"context"
	"fmt"
	"time"

	"github.com/rebound-grpc/rebound/fallback"
)

func ExampleNewMemoryCache() {
	ctx := context.Background()
	cache := fallback.NewMemoryCache(64<<20, fallback.WithTTL(24*time.Hour)) // 64 MiB

	key := fallback.Key("/pkg.Svc/Get", []byte{0x08, 0x2a}, []string{"tenant-a"})
	stored := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	if err := cache.Set(ctx, key, fallback.Entry{Value: []byte{0x0a, 0x02, 'o', 'k'}, StoredAt: stored}); err != nil {
		fmt.Println("set:", err)
	}

	e, ok, err := cache.Get(ctx, key)
	fmt.Println(ok, err, e.Value, e.StoredAt.Format(time.RFC3339))

	other := fallback.Key("/pkg.Svc/Get", []byte{0x08, 0x2a}, []string{"tenant-b"})
	_, ok, err = cache.Get(ctx, other)
	fmt.Println(ok, err)
	// Output:
	// true <nil> [10 2 111 107] 2026-11-28T12:00:00Z
	// false <nil>
}
