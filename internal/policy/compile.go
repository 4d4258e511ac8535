package policy

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/rebound-grpc/rebound/internal/backoff"
	"github.com/rebound-grpc/rebound/pattern"
	reboundv1 "github.com/rebound-grpc/rebound/proto/rebound/v1"
)

// Built-in defaults: what a method gets when no source sets a field.
const (
	DefaultMaxAttempts       = 3
	DefaultInitialBackoff    = 50 * time.Millisecond
	DefaultMaxBackoff        = time.Second
	DefaultBackoffMultiplier = 2.0
	DefaultHedgeDelay        = 0
)

// DefaultRetryableCodes are retried when a policy lists none: only
// UNAVAILABLE, which gRPC guarantees was not processed by the application or
// is safe to repeat for an idempotent method.
var DefaultRetryableCodes = pattern.CodesOf(codes.Unavailable)

// DefaultHedgeNonFatalCodes fire the next hedge at once when a policy lists none.
var DefaultHedgeNonFatalCodes = pattern.CodesOf(codes.Unavailable)

// PatternKind is the recovery pattern a method uses.
type PatternKind int

// The pattern kinds.
const (
	PatternNone PatternKind = iota
	PatternExponentialBackoff
	PatternPartialRecovery
	PatternAdaptiveRecovery
)

// String returns the proto name of the kind.
func (k PatternKind) String() string {
	switch k {
	case PatternExponentialBackoff:
		return "exponential_backoff"
	case PatternPartialRecovery:
		return "partial_recovery"
	case PatternAdaptiveRecovery:
		return "adaptive_recovery"
	default:
		return "no_pattern"
	}
}

// StepKind is the kind of a fallback step.
type StepKind int

// The step kinds.
const (
	StepAlternate StepKind = iota + 1
	StepCache
	StepStatic
	StepFunc
)

// String returns the proto name of the kind.
func (k StepKind) String() string {
	switch k {
	case StepAlternate:
		return "alternate"
	case StepCache:
		return "cache"
	case StepStatic:
		return "static_reply"
	case StepFunc:
		return "function"
	default:
		return "unknown"
	}
}

// Step is one compiled fallback step.
type Step struct {
	Kind StepKind
	// Alternate is the alternate's name (StepAlternate).
	Alternate string
	// MaxStaleness bounds the age of a served entry (StepCache).
	MaxStaleness time.Duration
	// KeyMetadata lists the metadata keys that scope the cache key (StepCache).
	KeyMetadata []string
	// Static is the reply's deterministic wire bytes (StepStatic).
	Static []byte
}

// Method is the compiled, immutable policy of one method. Fields are read
// concurrently by every call; nothing may modify them after Build.
type Method struct {
	// FullMethod is "/pkg.Service/Method"; empty for the Suite default.
	FullMethod string
	// Service is "pkg.Service"; empty for the Suite default.
	Service string
	// Descriptor is the method's descriptor when the registry knows it.
	Descriptor protoreflect.MethodDescriptor
	// Idempotent is true when idempotency_level is IDEMPOTENT or NO_SIDE_EFFECTS.
	Idempotent bool
	// Policy is the merged policy, for inspection and telemetry. Read only.
	Policy *reboundv1.RecoveryPolicy

	// MaxAttempts is the effective attempt limit: 1 when the method may not be
	// retried (not idempotent and not allowed by the policy).
	MaxAttempts int
	// ConfiguredAttempts is retry.max_attempts before the idempotency rule.
	ConfiguredAttempts int
	Backoff            backoff.Config
	RetryableCodes     pattern.Codes
	PerAttemptTimeout  time.Duration
	HonorPushback      bool

	Priority     pattern.Priority
	ServiceScope bool
	PatternKind  PatternKind
	// Breaker configures PatternExponentialBackoff, and the opening of
	// PatternPartialRecovery.
	Breaker pattern.ExponentialBackoffConfig
	// FailureCodes are the codes that count as a failure of the target.
	FailureCodes pattern.Codes
	// PartialCfg configures PatternPartialRecovery (its Breaker is Breaker).
	PartialCfg pattern.PartialRecoveryConfig
	// AdaptiveCfg configures PatternAdaptiveRecovery.
	AdaptiveCfg pattern.AdaptiveRecoveryConfig
	// WantsLoad is set when the pattern reads ORCA load reports (trailers).
	WantsLoad bool
	// FollowHealth and HealthService: watch the target's grpc.health.v1 status.
	FollowHealth  bool
	HealthService string
	Partial       *reboundv1.PartialRecovery
	Adaptive      *reboundv1.AdaptiveRecovery

	Steps      []Step
	FallbackOn pattern.Codes
	// Cache is the first cache step, or nil: when set, successful replies are stored.
	Cache *Step

	// HedgeAttempts is the effective hedging limit: 1 means no hedging.
	HedgeAttempts   int
	HedgeDelay      time.Duration
	HedgePercentile float64
	HedgeNonFatal   pattern.Codes
}

// Input is everything Build resolves policies from.
type Input struct {
	// Files is the registry searched for services; nil means none.
	Files *protoregistry.Files
	// Defaults is WithDefaultPolicy's policy, or nil.
	Defaults *reboundv1.RecoveryPolicy
	// Overrides maps "/pkg.Svc/Method" or "pkg.Svc" to a Go policy.
	Overrides map[string]*reboundv1.RecoveryPolicy
	// Alternates holds the names registered with WithAlternate.
	Alternates map[string]bool
	// Funcs holds the full methods that have a fallback function.
	Funcs map[string]bool
}

// Table maps full method names to their compiled policies. It is immutable and
// safe for concurrent use.
type Table struct {
	methods  map[string]*Method
	services map[string]*Method // Go service overrides of services the registry lacks
	def      *Method
}

// Lookup returns the policy of fullMethod: O(1), no allocation. A method the
// table does not know gets its service's Go override, if any, else the defaults.
func (t *Table) Lookup(fullMethod string) *Method {
	if m, ok := t.methods[fullMethod]; ok {
		return m
	}
	if len(t.services) > 0 {
		if svc, ok := serviceOf(fullMethod); ok {
			if m, ok := t.services[svc]; ok {
				return m
			}
		}
	}
	return t.def
}

// Default returns the policy of methods that nothing configures.
func (t *Table) Default() *Method { return t.def }

// Methods returns the full method names the table knows, sorted.
func (t *Table) Methods() []string {
	out := make([]string, 0, len(t.methods))
	for k := range t.methods {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// serviceOf returns "pkg.Svc" of "/pkg.Svc/Method" without allocating.
func serviceOf(fullMethod string) (string, bool) {
	if len(fullMethod) < 4 || fullMethod[0] != '/' {
		return "", false
	}
	i := strings.IndexByte(fullMethod[1:], '/') + 1
	if i <= 1 || i == len(fullMethod)-1 || strings.IndexByte(fullMethod[i+1:], '/') >= 0 {
		return "", false
	}
	return fullMethod[1:i], true
}

// Build validates every source and compiles the policy of every method it can
// see. All problems are reported together.
func Build(in Input) (*Table, error) {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(CheckSource("default policy (WithDefaultPolicy)", in.Defaults))
	base := Merge(builtin(), in.Defaults)

	// Normalise and check the Go overrides.
	methodOv := map[string]*reboundv1.RecoveryPolicy{}
	serviceOv := map[string]*reboundv1.RecoveryPolicy{}
	for _, name := range sortedKeys(in.Overrides) {
		p := in.Overrides[name]
		if strings.Contains(name, "/") {
			fm := name
			if !strings.HasPrefix(fm, "/") {
				fm = "/" + fm
			}
			if _, ok := serviceOf(fm); !ok {
				add(&FieldError{Where: name + " (WithPolicy)", Field: "name", Problem: "not a full method name \"/pkg.Service/Method\""})
				continue
			}
			add(CheckSource(fm+" (WithPolicy)", p))
			methodOv[fm] = p
		} else {
			if name == "" {
				add(&FieldError{Where: "\"\" (WithPolicy)", Field: "name", Problem: "empty: name a service \"pkg.Service\" or a method \"/pkg.Service/Method\""})
				continue
			}
			add(CheckSource(name+" (WithPolicy)", p))
			serviceOv[name] = p
		}
	}

	t := &Table{methods: map[string]*Method{}, services: map[string]*Method{}}
	seenServices := map[string]bool{}
	seenMethods := map[string]bool{}
	if in.Files != nil {
		in.Files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
			svcs := fd.Services()
			for i := 0; i < svcs.Len(); i++ {
				sd := svcs.Get(i)
				svc := string(sd.FullName())
				seenServices[svc] = true
				svcOpt := serviceOption(sd)
				add(CheckSource(svc+" (service option)", svcOpt))
				ms := sd.Methods()
				for j := 0; j < ms.Len(); j++ {
					md := ms.Get(j)
					fm := "/" + svc + "/" + string(md.Name())
					mOpt := methodOption(md)
					add(CheckSource(fm+" (method option)", mOpt))
					merged := Merge(Merge(Merge(Merge(base, svcOpt), mOpt), serviceOv[svc]), methodOv[fm])
					m, err := compile(fm, svc, md, merged, in)
					add(err)
					seenMethods[fm] = true
					if m != nil {
						t.methods[fm] = m
					}
				}
			}
			return true
		})
	}
	// Go overrides (and fallback functions) of methods and services the
	// registry does not know.
	for fm := range in.Funcs {
		if _, ok := methodOv[fm]; !ok && !seenMethods[fm] {
			if _, valid := serviceOf(fm); valid {
				methodOv[fm] = nil
			} else {
				add(&FieldError{Where: fm + " (WithFallbackFunc)", Field: "name", Problem: "not a full method name \"/pkg.Service/Method\""})
			}
		}
	}
	for _, fm := range sortedKeys(methodOv) {
		if seenMethods[fm] {
			continue
		}
		svc, _ := serviceOf(fm)
		if seenServices[svc] {
			add(&FieldError{Where: fm + " (WithPolicy)", Field: "name", Problem: "service " + svc + " has no such method"})
			continue
		}
		m, err := compile(fm, svc, nil, Merge(Merge(base, serviceOv[svc]), methodOv[fm]), in)
		add(err)
		if m != nil {
			t.methods[fm] = m
		}
	}
	for _, svc := range sortedKeys(serviceOv) {
		if seenServices[svc] {
			continue
		}
		m, err := compile("", svc, nil, Merge(base, serviceOv[svc]), in)
		add(err)
		if m != nil {
			t.services[svc] = m
		}
	}
	def, err := compile("", "", nil, base, in)
	add(err)
	t.def = def
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func methodOption(md protoreflect.MethodDescriptor) *reboundv1.RecoveryPolicy {
	opts, ok := md.Options().(*descriptorpb.MethodOptions)
	if !ok || opts == nil || !proto.HasExtension(opts, reboundv1.E_MethodPolicy) {
		return nil
	}
	p, _ := proto.GetExtension(opts, reboundv1.E_MethodPolicy).(*reboundv1.RecoveryPolicy)
	return p
}

func serviceOption(sd protoreflect.ServiceDescriptor) *reboundv1.RecoveryPolicy {
	opts, ok := sd.Options().(*descriptorpb.ServiceOptions)
	if !ok || opts == nil || !proto.HasExtension(opts, reboundv1.E_ServicePolicy) {
		return nil
	}
	p, _ := proto.GetExtension(opts, reboundv1.E_ServicePolicy).(*reboundv1.RecoveryPolicy)
	return p
}

// builtin is the policy under every other: the documented defaults that are
// expressed as messages (scalar defaults are applied by compile).
func builtin() *reboundv1.RecoveryPolicy {
	return &reboundv1.RecoveryPolicy{
		Pattern: &reboundv1.RecoveryPolicy_ExponentialBackoff{ExponentialBackoff: &reboundv1.ExponentialBackoff{}},
	}
}

func orU(v *uint32, def uint32) uint32 {
	if v == nil {
		return def
	}
	return *v
}

func orF(v *float64, def float64) float64 {
	if v == nil {
		return def
	}
	return *v
}

func ms(v uint32) time.Duration { return time.Duration(v) * time.Millisecond }

func codesOf(cs []reboundv1.StatusCode, def pattern.Codes) pattern.Codes {
	if len(cs) == 0 {
		return def
	}
	var out pattern.Codes
	for _, c := range cs {
		out |= pattern.CodesOf(codes.Code(c))
	}
	return out
}

// compile turns a merged policy into a Method, checking what needs the merged
// view: cross-field relations and references.
func compile(fm, svc string, md protoreflect.MethodDescriptor, p *reboundv1.RecoveryPolicy, in Input) (*Method, error) {
	where := fm
	switch {
	case fm == "" && svc == "":
		where = "default policy"
	case fm == "":
		where = svc
	}
	c := &checker{where: where + " (merged)"}
	m := &Method{FullMethod: fm, Service: svc, Descriptor: md, Policy: p}
	if md != nil {
		if opts, ok := md.Options().(*descriptorpb.MethodOptions); ok && opts != nil {
			switch opts.GetIdempotencyLevel() {
			case descriptorpb.MethodOptions_IDEMPOTENT, descriptorpb.MethodOptions_NO_SIDE_EFFECTS:
				m.Idempotent = true
			}
		}
	}

	// Retry.
	r := p.GetRetry()
	if r == nil {
		r = &reboundv1.Retry{}
	}
	m.ConfiguredAttempts = int(orU(r.MaxAttempts, DefaultMaxAttempts))
	m.Backoff = backoff.Config{
		Initial:    ms(orU(r.InitialBackoffMs, uint32(DefaultInitialBackoff/time.Millisecond))),
		Max:        ms(orU(r.MaxBackoffMs, uint32(DefaultMaxBackoff/time.Millisecond))),
		Multiplier: orF(r.BackoffMultiplier, DefaultBackoffMultiplier),
		Kind:       jitterKind(r.GetJitter()),
	}
	if m.Backoff.Max < m.Backoff.Initial {
		c.fail("retry.max_backoff_ms", "%v is below retry.initial_backoff_ms (%v)", m.Backoff.Max, m.Backoff.Initial)
	}
	m.RetryableCodes = codesOf(r.GetRetryableCodes(), DefaultRetryableCodes)
	m.PerAttemptTimeout = ms(r.GetPerAttemptTimeoutMs())
	m.HonorPushback = r == nil || r.HonorPushback == nil || r.GetHonorPushback()
	m.MaxAttempts = m.ConfiguredAttempts
	if !m.Idempotent && !r.GetAllowNonIdempotent() {
		m.MaxAttempts = 1
	}

	// Priority and scope.
	switch p.GetPriority() {
	case reboundv1.Priority_PRIORITY_SHEDDABLE:
		m.Priority = pattern.Sheddable
	case reboundv1.Priority_PRIORITY_CRITICAL:
		m.Priority = pattern.Critical
	default:
		m.Priority = pattern.Default
	}
	m.ServiceScope = p.GetPatternScope() == reboundv1.PatternScope_PATTERN_SCOPE_SERVICE

	// Pattern.
	failureCodes := pattern.DefaultFailureCodes
	switch pat := p.Pattern.(type) {
	case *reboundv1.RecoveryPolicy_ExponentialBackoff:
		m.PatternKind = PatternExponentialBackoff
		m.Breaker = breakerConfig(c, "exponential_backoff", pat.ExponentialBackoff)
		failureCodes = m.Breaker.FailureCodes
	case *reboundv1.RecoveryPolicy_PartialRecovery:
		m.PatternKind = PatternPartialRecovery
		m.Breaker = breakerConfig(c, "partial_recovery.breaker", pat.PartialRecovery.GetBreaker())
		m.Partial = pat.PartialRecovery
		failureCodes = m.Breaker.FailureCodes
		m.PartialCfg = partialConfig(m.Breaker, pat.PartialRecovery)
		m.FollowHealth = pat.PartialRecovery.GetFollowHealth()
		m.HealthService = pat.PartialRecovery.GetHealthService()
	case *reboundv1.RecoveryPolicy_AdaptiveRecovery:
		m.PatternKind = PatternAdaptiveRecovery
		m.Adaptive = pat.AdaptiveRecovery
		m.AdaptiveCfg = adaptiveConfig(pat.AdaptiveRecovery)
		m.WantsLoad = m.AdaptiveCfg.MaxUtilization > 0
		failureCodes = m.AdaptiveCfg.FailureCodes
	default:
		m.PatternKind = PatternNone
	}

	m.FailureCodes = failureCodes

	// Fallback.
	f := p.GetFallback()
	m.FallbackOn = codesOf(f.GetOnCodes(), failureCodes)
	if !f.GetDisabled() {
		for i, s := range f.GetSteps() {
			field := fmt.Sprintf("fallback.steps[%d]", i)
			switch st := s.Step.(type) {
			case *reboundv1.FallbackStep_Alternate:
				name := st.Alternate.GetName()
				if !in.Alternates[name] {
					c.fail(field+".alternate.name", "%q is not registered with WithAlternate", name)
				}
				m.Steps = append(m.Steps, Step{Kind: StepAlternate, Alternate: name})
			case *reboundv1.FallbackStep_Cache:
				m.Steps = append(m.Steps, Step{Kind: StepCache, MaxStaleness: ms(st.Cache.GetMaxStalenessMs()), KeyMetadata: st.Cache.GetKeyMetadata()})
			case *reboundv1.FallbackStep_StaticReply:
				b, err := parseStatic(md, st.StaticReply)
				if err != nil {
					c.fail(field+".static_reply", "%v", err)
				}
				m.Steps = append(m.Steps, Step{Kind: StepStatic, Static: b})
			case *reboundv1.FallbackStep_Function:
				if fm == "" || !in.Funcs[fm] {
					c.fail(field+".function", "no function is registered for this method with WithFallbackFunc")
				}
				m.Steps = append(m.Steps, Step{Kind: StepFunc})
			}
		}
	}
	if fm != "" && in.Funcs[fm] && !hasStep(m.Steps, StepFunc) {
		m.Steps = append(m.Steps, Step{Kind: StepFunc})
	}
	for i := range m.Steps {
		if m.Steps[i].Kind == StepCache {
			m.Cache = &m.Steps[i]
			break
		}
	}

	// Hedging.
	h := p.GetHedging()
	if h == nil {
		h = &reboundv1.Hedging{}
	}
	m.HedgeAttempts = int(orU(h.MaxAttempts, 1))
	m.HedgeDelay = ms(h.GetDelayMs())
	m.HedgePercentile = h.GetDelayPercentile()
	m.HedgeNonFatal = codesOf(h.GetNonFatalCodes(), DefaultHedgeNonFatalCodes)
	if m.HedgeAttempts > 1 && h.DelayMs == nil {
		c.fail("hedging.delay_ms", "must be set when hedging.max_attempts > 1 (it is also the delay used before delay_percentile has data)")
	}
	if !m.Idempotent && !h.GetAllowNonIdempotent() {
		m.HedgeAttempts = 1
	}
	if err := c.err(); err != nil {
		return nil, err
	}
	return m, nil
}

func hasStep(steps []Step, k StepKind) bool {
	for _, s := range steps {
		if s.Kind == k {
			return true
		}
	}
	return false
}

func jitterKind(j reboundv1.Jitter) backoff.Kind {
	switch j {
	case reboundv1.Jitter_JITTER_DECORRELATED:
		return backoff.Decorrelated
	case reboundv1.Jitter_JITTER_PROPORTIONAL:
		return backoff.Proportional
	default:
		return backoff.Full
	}
}

func breakerConfig(c *checker, prefix string, b *reboundv1.ExponentialBackoff) pattern.ExponentialBackoffConfig {
	cfg := pattern.DefaultExponentialBackoffConfig()
	if b == nil {
		b = &reboundv1.ExponentialBackoff{}
	}
	t := b.GetTrip()
	if t == nil {
		t = &reboundv1.Trip{}
	}
	if t.ConsecutiveFailures != nil {
		cfg.ConsecutiveFailures = int(*t.ConsecutiveFailures)
	}
	if t.FailureRatePercent != nil {
		cfg.FailureRateThreshold = *t.FailureRatePercent / 100
	}
	if t.SlowCallMs != nil {
		cfg.SlowCallDuration = ms(*t.SlowCallMs)
	}
	if t.SlowCallRatePercent != nil {
		if t.SlowCallMs == nil || *t.SlowCallMs == 0 {
			c.fail(prefix+".trip.slow_call_rate_percent", "needs trip.slow_call_ms")
		}
		cfg.SlowCallRateThreshold = *t.SlowCallRatePercent / 100
	}
	if t.WindowCalls != nil && t.WindowMs != nil {
		c.fail(prefix+".trip", "window_calls and window_ms are exclusive; set one")
	}
	if t.WindowMs != nil {
		cfg.WindowDuration = ms(*t.WindowMs)
	}
	if t.WindowCalls != nil {
		cfg.WindowCalls = int(*t.WindowCalls)
	}
	if t.MinimumCalls != nil {
		cfg.MinimumCalls = int(*t.MinimumCalls)
	}
	if cfg.WindowDuration == 0 && cfg.MinimumCalls > cfg.WindowCalls {
		c.fail(prefix+".trip.minimum_calls", "%d is above trip.window_calls (%d): the rate rules could never apply", cfg.MinimumCalls, cfg.WindowCalls)
	}
	cfg.FailureCodes = codesOf(t.GetFailureCodes(), cfg.FailureCodes)
	if b.OpenDelayMs != nil {
		cfg.OpenDelay = ms(*b.OpenDelayMs)
	}
	if b.MaxOpenDelayMs != nil {
		cfg.MaxOpenDelay = ms(*b.MaxOpenDelayMs)
	}
	if cfg.MaxOpenDelay < cfg.OpenDelay {
		c.fail(prefix+".max_open_delay_ms", "%v is below open_delay_ms (%v)", cfg.MaxOpenDelay, cfg.OpenDelay)
	}
	if b.Multiplier != nil {
		cfg.Multiplier = *b.Multiplier
	}
	if b.JitterPercent != nil {
		cfg.Jitter = *b.JitterPercent / 100
	}
	if b.MaxProbes != nil {
		cfg.MaxProbes = int(*b.MaxProbes)
	}
	if b.SuccessThreshold != nil {
		cfg.SuccessThreshold = int(*b.SuccessThreshold)
	}
	return cfg
}

// partialConfig compiles partial_recovery's settings over the defaults.
func partialConfig(breaker pattern.ExponentialBackoffConfig, pr *reboundv1.PartialRecovery) pattern.PartialRecoveryConfig {
	cfg := pattern.DefaultPartialRecoveryConfig()
	cfg.Breaker = breaker
	if r := pr.GetRampPercent(); len(r) > 0 {
		cfg.Ramp = make([]float64, len(r))
		for i, v := range r {
			cfg.Ramp[i] = v / 100
		}
	}
	if pr.StepWindowMs != nil {
		cfg.StepWindow = ms(*pr.StepWindowMs)
	}
	cfg.MaxInFlight = int(pr.GetMaxInFlight())
	if pr.StepFailureRatePercent != nil {
		cfg.StepFailureRate = *pr.StepFailureRatePercent / 100
	}
	if pr.StepMinimumCalls != nil {
		cfg.StepMinimumCalls = int(*pr.StepMinimumCalls)
	}
	cfg.ReopenOnFailure = pr.GetReopenOnFailure()
	cfg.SlowStartWindow = ms(pr.GetSlowStartWindowMs())
	if pr.SlowStartAggression != nil {
		cfg.SlowStartAggression = *pr.SlowStartAggression
	}
	if pr.SlowStartMinPercent != nil {
		cfg.SlowStartMinShare = *pr.SlowStartMinPercent / 100
	}
	return cfg
}

// adaptiveConfig compiles adaptive_recovery's settings over the defaults.
func adaptiveConfig(a *reboundv1.AdaptiveRecovery) pattern.AdaptiveRecoveryConfig {
	cfg := pattern.DefaultAdaptiveRecoveryConfig()
	if a.K != nil {
		cfg.K = *a.K
	}
	if a.WindowMs != nil {
		cfg.Window = ms(*a.WindowMs)
	}
	if a.LatencyPercentile != nil {
		cfg.LatencyPercentile = *a.LatencyPercentile / 100
	}
	if a.LatencyFactor != nil {
		cfg.LatencyFactor = *a.LatencyFactor
	}
	if a.MaxUtilization != nil {
		cfg.MaxUtilization = *a.MaxUtilization
	}
	if a.MinAdmitPercent != nil && *a.MinAdmitPercent > 0 {
		cfg.MinAdmit = *a.MinAdmitPercent / 100
	}
	if a.AdjustIntervalMs != nil {
		cfg.AdjustInterval = ms(*a.AdjustIntervalMs)
	}
	if a.DecreaseFactor != nil {
		cfg.DecreaseFactor = *a.DecreaseFactor
	}
	if a.IncreasePercent != nil {
		cfg.IncreaseStep = *a.IncreasePercent / 100
	}
	cfg.FailureCodes = codesOf(a.GetFailureCodes(), cfg.FailureCodes)
	return cfg
}

// parseStatic parses a static reply as the method's reply type and returns its
// deterministic wire bytes.
func parseStatic(md protoreflect.MethodDescriptor, s *reboundv1.StaticReplyStep) ([]byte, error) {
	if md == nil {
		return nil, errors.New("the reply type is unknown (the method is not in the registry given to WithFiles), so a static reply cannot be parsed")
	}
	msg := dynamicpb.NewMessage(md.Output())
	var err error
	if s.GetJson() != "" {
		err = protojson.Unmarshal([]byte(s.GetJson()), msg)
	} else {
		err = prototext.Unmarshal([]byte(s.GetText()), msg)
	}
	if err != nil {
		return nil, fmt.Errorf("does not parse as %s: %v", md.Output().FullName(), err)
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(msg)
}
