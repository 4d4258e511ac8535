// Package rediscache implements [fallback.Cache] on Redis with go-redis, so
// that a fleet of clients shares the replies that the cache fallback step
// serves. It is the only rebound package that imports go-redis.
//
//	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", ContextTimeoutEnabled: true})
//	cache := rediscache.New(rdb, rediscache.WithTTL(time.Hour))
//
// Each entry is stored with SET ... PX under prefix+key (default prefix
// "rebound:", default TTL 24h) as a tagged value: the magic bytes "rb1", the
// big-endian int64 Unix nanoseconds of [fallback.Entry.StoredAt] (0 for the
// zero time), then the reply bytes. A value without the tag, or too short to
// hold it, is a miss.
//
// # Deadlines
//
// Every operation is bounded by its ctx and by a per-operation timeout
// (default 50ms, see [WithTimeout]): Get and Set return by the earlier of the
// two even when Redis is down or hangs. With a client whose
// ContextTimeoutEnabled option is true (recommended), go-redis itself stops at
// the deadline. Otherwise go-redis would wait for its own read and write
// timeouts (seconds by default), so the operation runs in a goroutine of its
// own that Get or Set stops waiting for at the deadline; that goroutine ends
// within the client's timeouts, and there are at most about as many of them
// as the client's pool has connections, since a goroutine still waiting for
// a connection gives up at the deadline.
//
// # Concurrency
//
// A [Cache] is safe for concurrent use, as the go-redis clients are.
package rediscache
