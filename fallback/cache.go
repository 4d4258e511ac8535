package fallback

import (
	"context"
	"time"
)

// Entry is a cached reply: the protobuf wire bytes of the response message
// (deterministic marshal) and the time it was stored.
//
// A Cache may keep Value without copying it, and Get may return a Value that
// the cache still holds: callers must not modify Value after passing it to
// [Cache.Set], nor modify a Value returned by [Cache.Get].
type Entry struct {
	// Value is the reply's protobuf wire bytes.
	Value []byte
	// StoredAt is when the reply was received from the primary; the cache step
	// compares it with the policy's maximum staleness. The zero time means
	// unknown.
	StoredAt time.Time
}

// Cache stores replies for the cache fallback step.
//
// A Cache must be safe for concurrent use. Implementations must honour ctx:
// they never block past its deadline and return promptly (with ctx's error)
// once it is done. Callers treat every error as a miss on Get and ignore it on
// Set, apart from reporting it; a Cache therefore returns errors only to
// describe why it could not answer.
type Cache interface {
	// Get returns the entry stored under key. ok is false on a miss; a miss
	// is not an error.
	Get(ctx context.Context, key string) (e Entry, ok bool, err error)
	// Set stores e under key, replacing any previous entry. The cache may
	// evict it at any time.
	Set(ctx context.Context, key string, e Entry) error
}
