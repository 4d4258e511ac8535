package rediscache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rebound-grpc/rebound/fallback"
)

// Defaults of a [Cache].
const (
	DefaultPrefix  = "rebound:"
	DefaultTTL     = 24 * time.Hour
	DefaultTimeout = 50 * time.Millisecond
)

// magic tags the values this package writes; the trailing 1 is the encoding
// version.
const magic = "rb1"

// headerLen is the length of magic plus the stored-at timestamp.
const headerLen = len(magic) + 8

// ErrCorrupt is wrapped by the error that Get returns, with ok false, when
// the value under a key was not written by this package (no "rb1" tag) or is
// truncated. Such a value is a miss; it is left in place, and the next Set of
// the key overwrites it.
var ErrCorrupt = errors.New("rediscache: not a rebound cache entry")

// Cache is a [fallback.Cache] on Redis. It is safe for concurrent use. Create
// it with [New]; the zero value is not usable.
type Cache struct {
	client   redis.UniversalClient
	prefix   string
	ttl      time.Duration
	timeout  time.Duration
	ctxAware bool // the client stops at ctx's deadline by itself
}

var _ fallback.Cache = (*Cache)(nil)

// Option configures a [Cache].
type Option interface {
	apply(*config)
}

type config struct {
	prefix  string
	ttl     time.Duration
	timeout time.Duration
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithPrefix sets the prefix of every Redis key the cache uses. Default:
// [DefaultPrefix] ("rebound:").
func WithPrefix(prefix string) Option {
	return optionFunc(func(c *config) { c.prefix = prefix })
}

// WithTTL sets the time to live of stored entries (Redis PX). 0 stores
// entries without expiry. Default: [DefaultTTL] (24h). New panics if ttl is
// negative.
func WithTTL(ttl time.Duration) Option {
	return optionFunc(func(c *config) { c.ttl = ttl })
}

// WithTimeout bounds each Get and Set, on top of the caller's ctx. Default:
// [DefaultTimeout] (50ms). New panics if d is not positive.
func WithTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.timeout = d })
}

// New returns a Cache that stores entries through client. The caller keeps
// ownership of client and closes it after the last use of the Cache.
//
// New panics if client is nil or an option is invalid: both are programming
// errors.
func New(client redis.UniversalClient, opts ...Option) *Cache {
	if client == nil {
		panic("rediscache: New: nil client")
	}
	cfg := config{prefix: DefaultPrefix, ttl: DefaultTTL, timeout: DefaultTimeout}
	for _, o := range opts {
		o.apply(&cfg)
	}
	if cfg.ttl < 0 {
		panic(fmt.Sprintf("rediscache: New: WithTTL(%v); want >= 0", cfg.ttl))
	}
	if cfg.timeout <= 0 {
		panic(fmt.Sprintf("rediscache: New: WithTimeout(%v); want > 0", cfg.timeout))
	}
	return &Cache{
		client:   client,
		prefix:   cfg.prefix,
		ttl:      cfg.ttl,
		timeout:  cfg.timeout,
		ctxAware: contextTimeoutEnabled(client),
	}
}

// contextTimeoutEnabled reports whether go-redis will stop at ctx's deadline
// for client.
func contextTimeoutEnabled(client redis.UniversalClient) bool {
	switch c := client.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return false
}

// Get returns the entry stored under key. A missing key is a miss with a nil
// error; a value this package did not write is a miss with an error wrapping
// [ErrCorrupt]; any other failure (Redis down, timeout, ctx done) is a miss
// with an error that wraps go-redis's or ctx's.
func (c *Cache) Get(ctx context.Context, key string) (fallback.Entry, bool, error) {
	if err := ctx.Err(); err != nil {
		return fallback.Entry{}, false, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var b []byte
	err := c.do(ctx, func(ctx context.Context) error {
		var err error
		b, err = c.client.Get(ctx, c.prefix+key).Bytes()
		return err
	})
	switch {
	case errors.Is(err, redis.Nil):
		return fallback.Entry{}, false, nil
	case err != nil:
		return fallback.Entry{}, false, fmt.Errorf("rediscache: get: %w", err)
	}
	e, err := decode(b)
	if err != nil {
		return fallback.Entry{}, false, err
	}
	return e, true, nil
}

// Set stores e under key with the cache's TTL. It returns an error that
// wraps go-redis's or ctx's when the entry could not be stored in time.
func (c *Cache) Set(ctx context.Context, key string, e fallback.Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	v := encode(e)
	err := c.do(ctx, func(ctx context.Context) error {
		return c.client.Set(ctx, c.prefix+key, v, c.ttl).Err()
	})
	if err != nil {
		return fmt.Errorf("rediscache: set: %w", err)
	}
	return nil
}

// do runs op and returns by ctx's deadline, whether or not the client
// honours ctx itself (see the package documentation).
func (c *Cache) do(ctx context.Context, op func(context.Context) error) error {
	if c.ctxAware {
		err := op(ctx)
		if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			// go-redis reports a socket timeout; say why it happened.
			return fmt.Errorf("%w: %w", ctx.Err(), err)
		}
		return err
	}
	done := make(chan error, 1)
	go func() { done <- op(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func encode(e fallback.Entry) []byte {
	var nanos int64
	if !e.StoredAt.IsZero() {
		nanos = e.StoredAt.UnixNano()
	}
	b := make([]byte, headerLen, headerLen+len(e.Value))
	copy(b, magic)
	binary.BigEndian.PutUint64(b[len(magic):], uint64(nanos))
	return append(b, e.Value...)
}

func decode(b []byte) (fallback.Entry, error) {
	if len(b) < headerLen {
		return fallback.Entry{}, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrCorrupt, len(b), headerLen)
	}
	if string(b[:len(magic)]) != magic {
		return fallback.Entry{}, fmt.Errorf("%w: tag %q; want %q", ErrCorrupt, b[:len(magic)], magic)
	}
	var e fallback.Entry
	if nanos := int64(binary.BigEndian.Uint64(b[len(magic):])); nanos != 0 {
		e.StoredAt = time.Unix(0, nanos)
	}
	e.Value = b[headerLen:]
	return e, nil
}
