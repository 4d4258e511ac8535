package interceptor

import (
	"context"
	"fmt"
	"time"

	"github.com/cespare/xxhash/v2"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/rebound-grpc/rebound/fallback"
	"github.com/rebound-grpc/rebound/internal/policy"
	"github.com/rebound-grpc/rebound/pattern"
)

// Served describes how a call was answered: by the primary (after how many
// attempts), an alternate, the cache (and how old the reply was), a static
// reply or a function.
type Served = fallback.Served

// ServedBy returns a call option that reports how the call was answered into
// *s, so that an application can mark degraded replies:
//
//	var served interceptor.Served
//	reply, err := client.Get(ctx, req, interceptor.ServedBy(&served))
//	if err == nil && served.Degraded() { ... }
//
// grpc ignores the option; without rebound's interceptor *s is left as it was.
func ServedBy(s *Served) grpc.CallOption { return servedOption{s: s} }

type servedOption struct {
	grpc.EmptyCallOption
	s *Served
}

// setServed reports sv to the ServedBy options among opts.
func setServed(opts []grpc.CallOption, sv Served) {
	for _, o := range opts {
		if so, ok := o.(servedOption); ok && so.s != nil {
			*so.s = sv
		}
	}
}

// maxStoresInFlight bounds the asynchronous cache writes of a Suite; writes
// beyond it are dropped (the next success stores again).
const maxStoresInFlight = 64

// storeTimeout bounds one asynchronous cache write.
const storeTimeout = time.Second

// buildChain compiles the fallback chain of one method (nil when it has none).
func (s *Suite) buildChain(m *policy.Method, name string) (*fallback.Chain, *fallback.CacheStep, error) {
	if len(m.Steps) == 0 {
		return nil, nil, nil
	}
	steps := make([]fallback.Step, 0, len(m.Steps))
	var cacheStep *fallback.CacheStep
	for _, st := range m.Steps {
		switch st.Kind {
		case policy.StepAlternate:
			steps = append(steps, fallback.NewAlternate(st.Alternate, s.cfg.alternates[st.Alternate], s.alternatePattern(m, name, st.Alternate)))
		case policy.StepCache:
			cs := fallback.NewCacheStep(s.cache, st.MaxStaleness, st.KeyMetadata)
			if cacheStep == nil {
				cacheStep = cs
			}
			steps = append(steps, cs)
		case policy.StepStatic:
			steps = append(steps, fallback.NewStatic(st.Static))
		case policy.StepFunc:
			steps = append(steps, fallback.NewFunc(s.cfg.funcs[m.FullMethod]))
		}
	}
	ch, err := fallback.NewChain(steps...)
	if err != nil {
		return nil, nil, fmt.Errorf("rebound: %s: fallback: %w", name, err)
	}
	return ch, cacheStep, nil
}

// alternatePattern guards one alternate for one method with a breaker of the
// method's settings (the defaults when the method has another pattern).
func (s *Suite) alternatePattern(m *policy.Method, name, alt string) pattern.Pattern {
	cfg := pattern.DefaultExponentialBackoffConfig()
	if m.PatternKind == policy.PatternExponentialBackoff || m.PatternKind == policy.PatternPartialRecovery {
		cfg = m.Breaker
	}
	metricName := otherMethod
	if m.FullMethod != "" {
		metricName = spanName(m.FullMethod)
	}
	cfg.OnStateChange = s.transitionHook(name, metricName, "alternate:"+alt, alt)
	p, err := pattern.NewExponentialBackoff(cfg)
	if err != nil {
		return nil // settings were validated by New; unreachable
	}
	return p
}

// store keeps a successful reply for the method's cache step. The marshal
// runs now (the caller may reuse its messages once the call returns); the
// write is synchronous for the memory cache and asynchronous, bounded, for
// any other cache.
func (s *Suite) store(ctx context.Context, ms *methodState, method string, req, reply any) {
	key, e, err := ms.cacheStep.Entry(ctx, method, req, reply, time.Now())
	if err != nil {
		s.cfg.logger.Debug("rebound: reply not cached", zap.String("method", method), zap.Error(err))
		return
	}
	s.storeEntry(method, key, e, ms.cacheStep.MaxStaleness()/2)
}

// recentStoresSize bounds the keys whose last written value the Suite remembers.
const recentStoresSize = 4096

// storedMark is what the Suite remembers of the last write of one key.
type storedMark struct {
	sum uint64    // xxhash of the value
	at  time.Time // when it was stored
}

// storeEntry writes a cache entry made on the caller's goroutine: at once for
// the memory cache, else asynchronously and bounded (writes beyond
// maxStoresInFlight are dropped). A reply equal to the one last written under
// the same key is not written again until refresh has passed, so a stable
// reply costs a hash, not a cache (or Redis) write, per call, while its entry
// never gets older than refresh plus the time since the last success.
func (s *Suite) storeEntry(method, key string, e fallback.Entry, refresh time.Duration) {
	sum := xxhash.Sum64(e.Value)
	if m, ok := s.recent.Get(key); ok && m.sum == sum && e.StoredAt.Sub(m.at) < refresh {
		return
	}
	if s.localCache {
		if s.cache.Set(context.Background(), key, e) == nil {
			s.recent.Add(key, storedMark{sum: sum, at: e.StoredAt})
		}
		return
	}
	select {
	case s.storeSem <- struct{}{}:
	default:
		return // too many writes in flight: drop this one
	}
	s.recent.Add(key, storedMark{sum: sum, at: e.StoredAt})
	s.storeWG.Add(1)
	go func() {
		defer s.storeWG.Done()
		defer func() { <-s.storeSem }()
		sctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		defer cancel()
		if err := s.cache.Set(sctx, key, e); err != nil {
			s.recent.Remove(key) // the next success writes again
			s.cfg.logger.Debug("rebound: cache write failed", zap.String("method", method), zap.Error(err))
		}
	}()
}

// fallback runs the method's fallback chain; when no step answers, the error
// carries cause's status unchanged. A call made by a chain's step never
// enters a chain again.
func (c *call) fallback(ctx context.Context, cause error) error {
	ch := c.ms.chain
	if ch == nil || fallback.InChain(ctx) {
		return c.done(ctx, Served{Source: fallback.SourceNone, Attempts: c.attempts}, cause)
	}
	served, err := ch.RunObserved(ctx, &fallback.Call{Method: c.method, Req: c.req, Reply: c.reply, Priority: c.prio}, cause,
		c.s.stepObserver(c.ms, c.method, c.span))
	served.Attempts = c.attempts
	return c.done(ctx, served, err)
}
