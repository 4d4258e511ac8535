package interceptor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	lru "github.com/hashicorp/golang-lru/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/rebound-grpc/rebound/fallback"
	"github.com/rebound-grpc/rebound/internal/policy"
	"github.com/rebound-grpc/rebound/pattern"
)

// maxDynamicMethods bounds the per-method state kept for methods the policy
// table does not know (generic stubs): beyond it they share one state.
const maxDynamicMethods = 4096

// maxTargets bounds the per-target state of one method.
const maxTargets = 1024

// Suite owns the compiled policies and the recovery state (patterns, budgets)
// of every method and target. Build it with New; it is safe for concurrent use
// by any number of connections and calls.
type Suite struct {
	cfg     *config
	table   *policy.Table
	methods map[string]*methodState // known methods; immutable after New
	byAddr  [64]atomic.Pointer[addrEntry]
	// dynamic holds the state of methods the table does not know (copy on write).
	dynamic  atomic.Pointer[map[string]*methodState]
	overflow *methodState
	dynMu    sync.Mutex

	budgets  atomic.Pointer[map[string]*pattern.Budget] // per target, copy on write
	budgetMu sync.Mutex

	cache      fallback.Cache
	localCache bool                           // the cache is in process: writes are synchronous
	recent     *lru.Cache[string, storedMark] // the last value written per key (see storeEntry)
	storeSem   chan struct{}
	storeWG    sync.WaitGroup

	tel      *telemetry
	watchers watchers

	closed atomic.Bool
}

// methodState is the state of one method: its compiled policy and the pattern
// holder (shared by the methods of a service when pattern_scope is SERVICE).
type methodState struct {
	pol    *policy.Method
	holder *patternHolder
	// timed is set when the pattern needs every attempt's latency; otherwise
	// the healthy path skips the clock (patterns read it when they need it).
	timed bool
	// deferFailures: the pattern trips on failed calls, not on failed attempts
	// that a retry covers (see pendingFailure).
	deferFailures bool
	// chain is the fallback chain, nil when there is none; cacheStep is its
	// first cache step, nil when replies are not stored.
	chain     *fallback.Chain
	cacheStep *fallback.CacheStep
	// known is set for methods the policy table knows (their names are
	// bounded, so metrics may carry them).
	known bool
	// hedgeLat tracks successful attempt latencies for hedging.delay_percentile.
	hedgeLat latencyHist
}

func newMethodState(m *policy.Method, h *patternHolder) *methodState {
	timed := m.PatternKind == policy.PatternPartialRecovery || m.PatternKind == policy.PatternAdaptiveRecovery ||
		(m.PatternKind == policy.PatternExponentialBackoff && m.Breaker.SlowCallDuration > 0)
	deferFailures := m.PatternKind == policy.PatternExponentialBackoff || m.PatternKind == policy.PatternPartialRecovery
	return &methodState{pol: m, holder: h, timed: timed, deferFailures: deferFailures}
}

// patternHolder keeps one pattern instance per target.
type patternHolder struct {
	name       string // method or service the instance guards, for logs
	metricName string // its rpc.method attribute: bounded ("_OTHER" for unknown methods)
	pol        *policy.Method
	last       atomic.Pointer[targetState] // the last target used: the common case is one
	all        atomic.Pointer[map[string]*targetState]
	mu         sync.Mutex
}

// targetState is the recovery state of one (target, method or service).
type targetState struct {
	target  string
	pattern pattern.Pattern
	budget  *pattern.Budget
	// degraded counts down the successes since the last failure: while it is
	// above zero, attempts read trailers for server pushback. A healthy target
	// does not pay for it (grpc copies the trailer: one allocation per call).
	degraded atomic.Int32
	// healthWatch is set once a health watcher was started for this target.
	healthWatch atomic.Bool
	// budgetEmpty is set once the budget refused a retry, until it grants one:
	// exhaustion is logged once per episode.
	budgetEmpty atomic.Bool

	// Precomputed metric attributes (rpc.method, server.address) and call
	// span options.
	callOpts       atomic.Pointer[[]trace.SpanStartOption]
	attrs          attribute.Set
	okAttemptOpt   []metric.AddOption
	primaryCallOpt []metric.AddOption
}

// budgetOK notes that the budget granted a retry.
func (ts *targetState) budgetOK() {
	if ts.budgetEmpty.Load() {
		ts.budgetEmpty.Store(false)
	}
}

// budgetExhausted records a retry the budget refused; it logs once per episode.
func (s *Suite) budgetExhausted(ctx context.Context, ts *targetState, method string) {
	if s.tel.budgetExhausted.Enabled(ctx) {
		s.tel.budgetExhausted.Add(ctx, 1, metric.WithAttributeSet(ts.attrs))
	}
	if ts.budgetEmpty.CompareAndSwap(false, true) {
		s.cfg.logger.Warn("rebound retry budget exhausted: retries to this target stop until calls succeed again",
			zap.String("method", method), zap.String("target", ts.target))
	}
}

// degradedCalls is how many successes after a failure still read trailers.
const degradedCalls = 100

// failed marks the target as degraded.
func (ts *targetState) failed() { ts.degraded.Store(degradedCalls) }

// succeeded counts a success down from degraded, writing nothing when healthy.
func (ts *targetState) succeeded() {
	if ts.degraded.Load() > 0 {
		ts.degraded.Add(-1)
	}
}

// New builds a Suite: it resolves the policy of every method it can see (the
// services of protoregistry.GlobalFiles unless WithFiles says otherwise),
// validates it and compiles it. Every invalid option, method and field is
// reported in one joined error.
func New(opts ...Option) (*Suite, error) {
	cfg := newConfig(opts)
	errs := append([]error(nil), cfg.errs...)
	if _, err := pattern.NewBudget(cfg.budget); err != nil {
		errs = append(errs, fmt.Errorf("rebound: WithRetryBudget: %w", err))
	}
	alts := make(map[string]bool, len(cfg.alternates))
	for name := range cfg.alternates {
		alts[name] = true
	}
	funcs := make(map[string]bool, len(cfg.funcs))
	for fm := range cfg.funcs {
		funcs[fm] = true
	}
	table, err := policy.Build(policy.Input{
		Files:      cfg.files,
		Defaults:   cfg.defaults,
		Overrides:  cfg.overrides,
		Alternates: alts,
		Funcs:      funcs,
	})
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s := &Suite{cfg: cfg, table: table, methods: map[string]*methodState{}, cache: cfg.cache, storeSem: make(chan struct{}, maxStoresInFlight)}
	s.tel = newTelemetry(s, cfg.tp, cfg.mp)
	if s.cache == nil && needsCache(table) {
		s.cache = fallback.NewMemoryCache(DefaultCacheBytes)
	}
	_, s.localCache = s.cache.(*fallback.MemoryCache)
	s.recent, _ = lru.New[string, storedMark](recentStoresSize) // errors only for a size ≤ 0
	services := map[string]*patternHolder{}
	for _, fm := range table.Methods() {
		m := table.Lookup(fm)
		if err := checkPatternSupported(m); err != nil {
			errs = append(errs, err)
			continue
		}
		ms := newMethodState(m, nil)
		ms.known = true
		if m.ServiceScope {
			h, ok := services[m.Service]
			if !ok {
				h = &patternHolder{name: m.Service, metricName: m.Service, pol: m}
				services[m.Service] = h
			}
			ms.holder = h
		} else {
			ms.holder = &patternHolder{name: fm, metricName: fm[1:], pol: m}
		}
		if ms.chain, ms.cacheStep, err = s.buildChain(m, fm); err != nil {
			errs = append(errs, err)
		}
		s.methods[fm] = ms
	}
	if err := checkPatternSupported(table.Default()); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s.overflow = newMethodState(table.Default(), &patternHolder{name: "other", metricName: otherMethod, pol: table.Default()})
	if s.overflow.chain, s.overflow.cacheStep, err = s.buildChain(table.Default(), "default policy"); err != nil {
		return nil, err
	}
	empty := map[string]*methodState{}
	s.dynamic.Store(&empty)
	noBudgets := map[string]*pattern.Budget{}
	s.budgets.Store(&noBudgets)
	cfg.logger.Info("rebound suite ready",
		zap.Int("methods", len(s.methods)),
		zap.Int("alternates", len(cfg.alternates)),
		zap.Int("fallback_funcs", len(cfg.funcs)))
	for _, fm := range table.Methods() {
		m := table.Lookup(fm)
		cfg.logger.Debug("rebound method policy",
			zap.String("method", fm),
			zap.Int("max_attempts", m.MaxAttempts),
			zap.Bool("idempotent", m.Idempotent),
			zap.Stringer("pattern", m.PatternKind),
			zap.Int("fallback_steps", len(m.Steps)))
	}
	return s, nil
}

// checkPatternSupported validates the pattern settings a method compiled to
// (the proto ranges were checked by the policy package; this catches
// combinations only the pattern knows).
func checkPatternSupported(m *policy.Method) error {
	where := m.FullMethod
	if where == "" {
		where = "default policy"
	}
	var err error
	switch m.PatternKind {
	case policy.PatternNone:
		return nil
	case policy.PatternExponentialBackoff:
		err = m.Breaker.Validate()
	case policy.PatternPartialRecovery:
		err = m.PartialCfg.Validate()
	case policy.PatternAdaptiveRecovery:
		err = m.AdaptiveCfg.Validate()
	default:
		return fmt.Errorf("rebound: %s: %s: unknown pattern", where, m.PatternKind)
	}
	if err != nil {
		return fmt.Errorf("rebound: %s (merged): %s: %w", where, m.PatternKind, err)
	}
	return nil
}

// Close waits for the Suite's background cache writes and stops its
// background work. Calls made after Close still work. Close is idempotent.
func (s *Suite) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.watchers.close()
	s.storeWG.Wait()
	s.tel.close()
	return nil
}

// eachTarget calls fn for every (pattern holder, target) state, once each,
// with the holder's metric name.
func (s *Suite) eachTarget(fn func(method string, ts *targetState)) {
	s.visitHolders(func(h *patternHolder, ts *targetState) { fn(h.metricName, ts) })
}

// eachHolder is eachTarget with the holder's full name (method or service).
func (s *Suite) eachHolder(fn func(name string, ts *targetState)) {
	s.visitHolders(func(h *patternHolder, ts *targetState) { fn(h.name, ts) })
}

func (s *Suite) visitHolders(fn func(h *patternHolder, ts *targetState)) {
	seen := map[*patternHolder]bool{}
	visit := func(h *patternHolder) {
		if h == nil || seen[h] {
			return
		}
		seen[h] = true
		if all := h.all.Load(); all != nil {
			for _, ts := range *all {
				fn(h, ts)
			}
		}
	}
	for _, ms := range s.methods {
		visit(ms.holder)
	}
	for _, ms := range *s.dynamic.Load() {
		visit(ms.holder)
	}
	visit(s.overflow.holder)
}

// needsCache reports whether some policy of t has a cache step.
func needsCache(t *policy.Table) bool {
	if t.Default().Cache != nil {
		return true
	}
	for _, fm := range t.Methods() {
		if t.Lookup(fm).Cache != nil {
			return true
		}
	}
	return false
}

// method returns the state of fullMethod: one map lookup for known methods.
func (s *Suite) method(fullMethod string) *methodState {
	// Generated stubs pass the same string constant on every call: a cache
	// keyed by the string's address skips hashing its bytes.
	p := unsafe.StringData(fullMethod)
	slot := &s.byAddr[(uintptr(unsafe.Pointer(p))>>3)%uintptr(len(s.byAddr))]
	if e := slot.Load(); e != nil && e.data == p && e.n == len(fullMethod) {
		return e.ms
	}
	ms := s.lookupMethod(fullMethod)
	if slot.Load() == nil {
		// Only empty slots are filled (at most len(byAddr) entries over the
		// Suite's life), so strings built per call never allocate here. The
		// entry keeps the string alive: its address cannot be reused.
		slot.CompareAndSwap(nil, &addrEntry{data: p, n: len(fullMethod), ms: ms})
	}
	return ms
}

// addrEntry maps one method string, by address, to its state.
type addrEntry struct {
	data *byte
	n    int
	ms   *methodState
}

// lookupMethod finds the state of fullMethod by name.
func (s *Suite) lookupMethod(fullMethod string) *methodState {
	if ms, ok := s.methods[fullMethod]; ok {
		return ms
	}
	dyn := *s.dynamic.Load()
	if ms, ok := dyn[fullMethod]; ok {
		return ms
	}
	return s.addDynamic(fullMethod)
}

func (s *Suite) addDynamic(fullMethod string) *methodState {
	s.dynMu.Lock()
	defer s.dynMu.Unlock()
	old := *s.dynamic.Load()
	if ms, ok := old[fullMethod]; ok {
		return ms
	}
	if len(old) >= maxDynamicMethods {
		return s.overflow
	}
	m := s.table.Lookup(fullMethod)
	name := string([]byte(fullMethod)) // own the string: callers may reuse theirs
	ms := newMethodState(m, &patternHolder{name: name, metricName: otherMethod, pol: m})
	ms.chain, ms.cacheStep, _ = s.buildChain(m, name) // the same policies compiled at New
	next := make(map[string]*methodState, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[name] = ms
	s.dynamic.Store(&next)
	return ms
}

// target returns the recovery state of (cc's target, h).
func (s *Suite) target(h *patternHolder, target string) *targetState {
	if ts := h.last.Load(); ts != nil && ts.target == target {
		return ts
	}
	if all := h.all.Load(); all != nil {
		if ts, ok := (*all)[target]; ok {
			h.last.Store(ts)
			return ts
		}
	}
	return s.addTarget(h, target)
}

func (s *Suite) addTarget(h *patternHolder, target string) *targetState {
	h.mu.Lock()
	defer h.mu.Unlock()
	var old map[string]*targetState
	if all := h.all.Load(); all != nil {
		old = *all
		if ts, ok := old[target]; ok {
			return ts
		}
	}
	ts := &targetState{target: target, pattern: s.newPattern(h, target), budget: s.budget(target)}
	ts.initAttrs(h.metricName)
	if len(old) >= maxTargets {
		return ts // not kept: bounded memory beats shared state for a pathological client
	}
	next := make(map[string]*targetState, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[target] = ts
	h.all.Store(&next)
	h.last.Store(ts)
	return ts
}

// budget returns the retry budget shared by every call to target.
func (s *Suite) budget(target string) *pattern.Budget {
	if b, ok := (*s.budgets.Load())[target]; ok {
		return b
	}
	s.budgetMu.Lock()
	defer s.budgetMu.Unlock()
	old := *s.budgets.Load()
	if b, ok := old[target]; ok {
		return b
	}
	b, _ := pattern.NewBudget(s.cfg.budget) // validated by New
	next := make(map[string]*pattern.Budget, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[target] = b
	s.budgets.Store(&next)
	return b
}

// newPattern builds the pattern instance for (target, h). Its settings were
// validated by New, so an error here is a bug: the method then runs without
// a pattern rather than failing calls.
func (s *Suite) newPattern(h *patternHolder, target string) pattern.Pattern {
	var (
		p    pattern.Pattern
		err  error
		hook = s.stateLogger(h, target)
	)
	switch h.pol.PatternKind {
	case policy.PatternExponentialBackoff:
		cfg := h.pol.Breaker
		cfg.OnStateChange = hook
		p, err = pattern.NewExponentialBackoff(cfg)
	case policy.PatternPartialRecovery:
		cfg := h.pol.PartialCfg
		cfg.OnStateChange = hook
		p, err = pattern.NewPartialRecovery(cfg)
	case policy.PatternAdaptiveRecovery:
		cfg := h.pol.AdaptiveCfg
		cfg.OnStateChange = hook
		p, err = pattern.NewAdaptiveRecovery(cfg)
	default:
		return noPattern{}
	}
	if err != nil {
		s.cfg.logger.Error("rebound: invalid pattern settings; the method runs without a pattern",
			zap.String("method", h.name), zap.Stringer("pattern", h.pol.PatternKind), zap.Error(err))
		return noPattern{}
	}
	return p
}

// stateLogger returns the OnStateChange hook of (h, target): a metric and a
// log line per transition.
func (s *Suite) stateLogger(h *patternHolder, target string) func(from, to pattern.State, now time.Time) {
	return s.transitionHook(h.name, h.metricName, target, "")
}

// transitionHook returns an OnStateChange hook that counts the transition
// (rebound.pattern.transitions), logs it with the method, target and
// alternate (empty for the primary), and passes it to WithStateChange's
// function.
func (s *Suite) transitionHook(name, metricName, target, alt string) func(from, to pattern.State, now time.Time) {
	log := s.cfg.logger
	notify := s.cfg.onStateChange
	return func(from, to pattern.State, now time.Time) {
		s.onTransition(metricName, target, from, to)
		fields := []zap.Field{
			zap.String("method", name),
			zap.String("target", target),
			zap.Stringer("from", from),
			zap.Stringer("to", to)}
		if alt != "" {
			fields = append(fields, zap.String("alternate", alt))
		}
		log.Info("rebound pattern state change", fields...)
		if notify != nil {
			notify(StateChange{Method: name, Target: target, Alternate: alt, From: from, To: to, At: now})
		}
	}
}

// noPattern admits everything.
type noPattern struct{}

func (noPattern) ShouldAttemptRecovery(time.Time, pattern.Priority) pattern.Decision {
	return pattern.Decision{Allow: true}
}
func (noPattern) HandleSuccess(time.Time, pattern.Outcome) {}
func (noPattern) HandleFailure(time.Time, pattern.Outcome) {}
func (noPattern) State() pattern.State                     { return pattern.Closed }

// UnaryClientInterceptor returns the unary interceptor of the Suite.
func (s *Suite) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return s.unary
}
