package interceptor

import (
	"fmt"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/rebound-grpc/rebound/fallback"
	"github.com/rebound-grpc/rebound/internal/policy"
	"github.com/rebound-grpc/rebound/pattern"
	reboundv1 "github.com/rebound-grpc/rebound/proto/rebound/v1"
)

// Option configures a Suite. Options are applied in order by New.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// FallbackFunc answers a call when the steps before it in the method's
// fallback chain could not. It fills reply (a fresh message of the method's
// reply type, copied into the caller's reply only when the function returns
// nil) or returns an error. It runs within the caller's deadline.
type FallbackFunc = fallback.Func

type config struct {
	files         *protoregistry.Files
	defaults      *reboundv1.RecoveryPolicy
	overrides     map[string]*reboundv1.RecoveryPolicy
	alternates    map[string]grpc.ClientConnInterface
	funcs         map[string]FallbackFunc
	cache         fallback.Cache
	budget        pattern.BudgetConfig
	tp            trace.TracerProvider
	mp            metric.MeterProvider
	replayBytes   int
	logger        *zap.Logger
	onStateChange func(StateChange)
	errs          []error
}

func newConfig(opts []Option) *config {
	c := &config{
		files:       protoregistry.GlobalFiles,
		overrides:   map[string]*reboundv1.RecoveryPolicy{},
		alternates:  map[string]grpc.ClientConnInterface{},
		funcs:       map[string]FallbackFunc{},
		budget:      pattern.DefaultBudgetConfig(),
		replayBytes: defaultReplayBufferBytes,
		logger:      zap.NewNop(),
	}
	for _, o := range opts {
		if o != nil {
			o.apply(c)
		}
	}
	return c
}

func (c *config) fail(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("rebound: "+format, args...))
}

// WithFiles resolves policies from the services in files instead of
// protoregistry.GlobalFiles. Pass nil to resolve from Go options only.
func WithFiles(files *protoregistry.Files) Option {
	return optionFunc(func(c *config) { c.files = files })
}

// WithPolicy sets the policy of one method ("/pkg.Service/Method") or of every
// method of a service ("pkg.Service"). It overrides the proto options field by
// field; a method's WithPolicy overrides its service's. The policy is cloned.
func WithPolicy(fullMethodOrService string, p *reboundv1.RecoveryPolicy) Option {
	return optionFunc(func(c *config) {
		if p == nil {
			c.fail("WithPolicy(%q): nil policy", fullMethodOrService)
			return
		}
		if prev, ok := c.overrides[fullMethodOrService]; ok {
			c.overrides[fullMethodOrService] = policy.Merge(prev, p)
			return
		}
		c.overrides[fullMethodOrService] = policy.Merge(nil, p)
	})
}

// WithDefaultPolicy sets the Suite's defaults: the weakest policy, under every
// proto option and WithPolicy. Unset fields keep the built-in defaults.
func WithDefaultPolicy(p *reboundv1.RecoveryPolicy) Option {
	return optionFunc(func(c *config) {
		if p == nil {
			c.fail("WithDefaultPolicy: nil policy")
			return
		}
		c.defaults = policy.Merge(c.defaults, p)
	})
}

// WithAlternate registers conn as the alternate target called name, for the
// fallback steps `alternate: { name: "..." }`. The Suite does not close conn.
func WithAlternate(name string, conn grpc.ClientConnInterface) Option {
	return optionFunc(func(c *config) {
		switch {
		case name == "":
			c.fail("WithAlternate: empty name")
		case conn == nil:
			c.fail("WithAlternate(%q): nil connection", name)
		default:
			c.alternates[name] = conn
		}
	})
}

// WithFallbackFunc registers fn as the function step of fullMethod's fallback
// chain. A chain without a `function: {}` step gets fn as its last step.
func WithFallbackFunc(fullMethod string, fn FallbackFunc) Option {
	return optionFunc(func(c *config) {
		if fn == nil {
			c.fail("WithFallbackFunc(%q): nil function", fullMethod)
			return
		}
		c.funcs[fullMethod] = fn
	})
}

// WithCache sets the cache of the cache fallback steps: replies of methods
// whose chain has a cache step are stored there on success and served from
// there on fallback. Default: a fallback.MemoryCache of DefaultCacheBytes,
// created only when some method has a cache step. See fallback/rediscache
// for a cache shared by a fleet.
func WithCache(c fallback.Cache) Option {
	return optionFunc(func(cfg *config) {
		if c == nil {
			cfg.fail("WithCache: nil cache")
			return
		}
		cfg.cache = c
	})
}

// DefaultCacheBytes is the size of the memory cache a Suite creates when a
// method has a cache step and WithCache is not given.
const DefaultCacheBytes = 64 << 20

// WithRetryBudget sets the retry budget shared by all calls to one target
// (default pattern.DefaultBudgetConfig: one token per successful attempt,
// 20 at most, and 5 retries after the last success, so a total outage gets
// almost no retries while a partial one gets the retries it needs).
func WithRetryBudget(b pattern.BudgetConfig) Option {
	return optionFunc(func(c *config) { c.budget = b })
}

// WithTracerProvider traces calls with tp (default: the otel global
// provider, looked up per call, so a provider set after New is used). While
// the global was never set, or with a no-op provider, no span is created and
// tracing costs nothing.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) { c.tp = tp })
}

// WithMeterProvider records metrics with mp (default: the otel global
// provider). Instruments are created by New; a disabled instrument costs one
// atomic load per call.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(c *config) { c.mp = mp })
}

// WithReplayBuffer bounds the client messages a stream keeps, per stream,
// to replay them on a new attempt before the stream is committed (default
// 256 KiB, as grpc-go). A stream whose messages overflow it is committed: it
// is no longer retried. 0 keeps nothing: streams with client messages are
// committed at their first message.
func WithReplayBuffer(bytes int) Option {
	return optionFunc(func(c *config) {
		if bytes < 0 {
			c.fail("WithReplayBuffer(%d): negative size", bytes)
			return
		}
		c.replayBytes = bytes
	})
}

// WithStateChange calls fn after every state transition of every pattern
// the Suite holds, the primary's and the alternates' breakers alike — for
// dashboards, alerts or a demo's timeline. fn runs on the goroutine of the
// call that caused the transition, after the pattern released its lock: it
// may call [Suite.Patterns], but must be quick and must not block. Nil
// calls nothing.
func WithStateChange(fn func(StateChange)) Option {
	return optionFunc(func(c *config) { c.onStateChange = fn })
}

// WithLogger logs configuration at New, pattern state transitions and budget
// exhaustion to l (default: no logging). Healthy calls are never logged.
func WithLogger(l *zap.Logger) Option {
	return optionFunc(func(c *config) {
		if l == nil {
			l = zap.NewNop()
		}
		c.logger = l
	})
}
