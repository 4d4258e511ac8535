package interceptor

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rebound-grpc/rebound/fallback"
	"github.com/rebound-grpc/rebound/pattern"
)

// ScopeName is the instrumentation scope of rebound's spans and metrics.
const ScopeName = "github.com/rebound-grpc/rebound/interceptor"

// Version is rebound's version, reported with the instrumentation scope.
const Version = "0.1.0"

// Span and attribute names. Standard keys follow the OpenTelemetry RPC and
// gRPC semantic conventions; rebound's own keys are prefixed "rebound.".
const (
	attrSystemName    = "rpc.system.name"          // "grpc"
	attrMethod        = "rpc.method"               // "pkg.Service/Method"; "_OTHER" in metrics for unknown methods
	attrStatusCode    = "rpc.response.status_code" // "OK", "UNAVAILABLE", ...
	attrServerAddress = "server.address"           // the connection's target
	attrErrorType     = "error.type"               // the status code name, on failures
	attrAttempt       = "rebound.attempt"          // 1-based attempt number
	attrAttempts      = "rebound.attempts"         // attempts a call made on its primary
	attrBackoff       = "rebound.backoff_ms"       // backoff slept before an attempt
	attrProbe         = "rebound.probe"            // the attempt was a recovery probe
	attrHedge         = "rebound.hedge"            // the attempt was a hedge (not the first)
	attrServedBy      = "rebound.served_by"        // primary, alternate, cache, static, function, none
	attrStep          = "rebound.fallback.step"    // alternate, cache, static_reply, function
	attrAlternate     = "rebound.fallback.alternate"
	attrStepResult    = "rebound.fallback.result" // answered, failed
	attrCacheAge      = "rebound.cache.age_ms"
	attrCacheResult   = "rebound.cache.result" // hit, miss, stale, error
	attrPatternState  = "rebound.pattern.state"
	attrPatternFrom   = "rebound.pattern.from"
	attrPatternTo     = "rebound.pattern.to"
	attrRetryAfter    = "rebound.retry_after_ms"
	attrStopReason    = "rebound.retry.stop_reason"

	eventShortCircuit = "rebound.short_circuit" // the pattern did not admit the call
	eventBackoff      = "rebound.backoff"       // a retry will be sent after a backoff
	eventRetryStopped = "rebound.retry_stopped" // no (more) retries, with the reason

	otherMethod = "_OTHER"
)

// Metric names.
const (
	metricCalls          = "rebound.client.calls"          // {call}: calls by how they were answered
	metricAttempts       = "rebound.client.attempts"       // {attempt}: attempts on the primary by status code
	metricRetries        = "grpc.client.call.retries"      // histogram, retries per call (gRFC A96), only calls that retried
	metricRetryDelay     = "grpc.client.call.retry_delay"  // histogram, s, total backoff slept per call (gRFC A96)
	metricHedges         = "grpc.client.call.hedges"       // histogram, hedges per call (gRFC A96), only calls that hedged
	metricFallbacks      = "rebound.client.fallbacks"      // {step}: fallback steps by kind and result
	metricCacheLookups   = "rebound.client.cache.lookups"  // {lookup}: cache step lookups by result
	metricShortCircuits  = "rebound.client.short_circuits" // {call}: calls the pattern did not admit
	metricBudgetExceeded = "rebound.client.retry_budget.exhausted"
	metricTransitions    = "rebound.pattern.transitions" // {transition}: pattern state changes
	metricPatternState   = "rebound.pattern.state"       // gauge: 0 closed, 1 open, 2 recovering
	metricAdmitted       = "rebound.pattern.admitted"    // gauge: share of calls admitted now (0..1)
)

// defaultGlobalTP is the global provider before any otel.SetTracerProvider:
// while it is still the global, tracing is off and costs nothing.
var defaultGlobalTP = otel.GetTracerProvider()

type tracerEntry struct {
	tp     trace.TracerProvider
	tracer trace.Tracer
}

// telemetry holds the Suite's tracer and instruments.
type telemetry struct {
	explicitTP trace.TracerProvider // WithTracerProvider, or nil for the global
	tracer     atomic.Pointer[tracerEntry]

	calls, attempts, fallbacks, cacheLookups, shortCircuits, budgetExhausted, transitions metric.Int64Counter
	retries, hedges                                                                       metric.Int64Histogram
	retryDelay                                                                            metric.Float64Histogram
	stateGauge                                                                            metric.Int64ObservableGauge
	admittedGauge                                                                         metric.Float64ObservableGauge
	registration                                                                          metric.Registration
}

// newTelemetry creates the instruments; errors go to otel.Handle and leave a
// no-op instrument in place (telemetry never fails a Suite or a call).
func newTelemetry(s *Suite, tp trace.TracerProvider, mp metric.MeterProvider) *telemetry {
	t := &telemetry{explicitTP: tp}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(ScopeName, metric.WithInstrumentationVersion(Version))
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if err != nil {
			otel.Handle(err)
		}
		return c
	}
	t.calls = counter(metricCalls, "{call}", "Calls through rebound, by how they were answered (rebound.served_by).")
	t.attempts = counter(metricAttempts, "{attempt}", "Attempts sent to the primary target, by status code.")
	t.fallbacks = counter(metricFallbacks, "{step}", "Fallback steps run, by kind and result.")
	t.cacheLookups = counter(metricCacheLookups, "{lookup}", "Cache step lookups, by result: hit, miss, stale, error.")
	t.shortCircuits = counter(metricShortCircuits, "{call}", "Calls the recovery pattern did not admit.")
	t.budgetExhausted = counter(metricBudgetExceeded, "{retry}", "Retries refused because the target's retry budget was empty.")
	t.transitions = counter(metricTransitions, "{transition}", "Recovery pattern state changes.")
	var err error
	if t.retries, err = m.Int64Histogram(metricRetries, metric.WithUnit("{retry}"),
		metric.WithDescription("Retries per call, for calls that retried (gRFC A96)."),
		metric.WithExplicitBucketBoundaries(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)); err != nil {
		otel.Handle(err)
	}
	if t.hedges, err = m.Int64Histogram(metricHedges, metric.WithUnit("{hedge}"),
		metric.WithDescription("Hedges per call, for calls that hedged (gRFC A96)."),
		metric.WithExplicitBucketBoundaries(1, 2, 3, 4, 5)); err != nil {
		otel.Handle(err)
	}
	if t.retryDelay, err = m.Float64Histogram(metricRetryDelay, metric.WithUnit("s"),
		metric.WithDescription("Total backoff slept per call, for calls that retried (gRFC A96)."),
		metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)); err != nil {
		otel.Handle(err)
	}
	if t.stateGauge, err = m.Int64ObservableGauge(metricPatternState, metric.WithUnit("{state}"),
		metric.WithDescription("Recovery pattern state per method and target: 0 closed, 1 open, 2 recovering.")); err != nil {
		otel.Handle(err)
	}
	if t.admittedGauge, err = m.Float64ObservableGauge(metricAdmitted, metric.WithUnit("1"),
		metric.WithDescription("Share of calls the recovery pattern admits now: 1 closed, 0 open, the ramp's share or the admission probability in between.")); err != nil {
		otel.Handle(err)
	}
	if t.stateGauge != nil && t.admittedGauge != nil {
		if t.registration, err = m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
			now := time.Now()
			s.eachTarget(func(method string, ts *targetState) {
				o.ObserveInt64(t.stateGauge, int64(ts.pattern.State()), metric.WithAttributeSet(ts.attrs))
				o.ObserveFloat64(t.admittedGauge, admitted(ts.pattern, now), metric.WithAttributeSet(ts.attrs))
			})
			return nil
		}, t.stateGauge, t.admittedGauge); err != nil {
			otel.Handle(err)
		}
	}
	return t
}

func (t *telemetry) close() {
	if t.registration != nil {
		if err := t.registration.Unregister(); err != nil {
			otel.Handle(err)
		}
	}
}

// tracerFor returns the tracer, or nil when tracing is off (the global
// provider was never set, or a no-op provider was given): then the call path
// creates no span and allocates nothing.
func (t *telemetry) tracerFor() trace.Tracer {
	tp := t.explicitTP
	if tp == nil {
		tp = otel.GetTracerProvider()
		if tp == defaultGlobalTP {
			return nil
		}
	}
	if e := t.tracer.Load(); e != nil && e.tp == tp {
		return e.tracer
	}
	if _, ok := tp.(tracenoop.TracerProvider); ok {
		return nil
	}
	e := &tracerEntry{tp: tp, tracer: tp.Tracer(ScopeName, trace.WithInstrumentationVersion(Version))}
	t.tracer.Store(e)
	return e.tracer
}

// codeName is the semantic-convention string of a code, e.g. "UNAVAILABLE".
func codeName(c grpccodes.Code) string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "CODE_" + c.String()
}

var codeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
}

func statusCode(err error) grpccodes.Code { return status.Code(err) }

func errorsIs(err, target error) bool { return errors.Is(err, target) }

// metricMethod is the rpc.method value for metrics: bounded to the methods
// the Suite knows.
func metricMethod(ms *methodState, method string) string {
	if ms.known {
		return method[1:]
	}
	return otherMethod
}

// firstAttemptOpts are the start options of a first, non-probe attempt span.
var firstAttemptOpts = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(
	attribute.Int(attrAttempt, 1), attribute.Int64(attrBackoff, 0), attribute.Bool(attrProbe, false))}

// callSpan starts the call span when tracing is on; the span is nil otherwise.
func (s *Suite) callSpan(ctx context.Context, ms *methodState, ts *targetState, method string) (context.Context, trace.Span) {
	tr := s.tel.tracerFor()
	if tr == nil {
		return ctx, nil
	}
	return tr.Start(ctx, spanName(method), ts.spanOpts(ms, method)...)
}

// spanName is the method without its leading slash: "pkg.Service/Method".
func spanName(method string) string {
	if len(method) > 0 && method[0] == '/' {
		return method[1:]
	}
	return method
}

// spanOpts returns the call span's start options for a (method, target),
// built once for known methods.
func (ts *targetState) spanOpts(ms *methodState, method string) []trace.SpanStartOption {
	if !ms.known {
		return callSpanOpts(spanName(method), ts.target)
	}
	if o := ts.callOpts.Load(); o != nil {
		return *o
	}
	o := callSpanOpts(spanName(method), ts.target)
	ts.callOpts.Store(&o)
	return o
}

func callSpanOpts(name, target string) []trace.SpanStartOption {
	return []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String(attrSystemName, "grpc"),
		attribute.String(attrMethod, name),
		attribute.String(attrServerAddress, target),
	)}
}

// endCallSpan records a call's result on its span.
func endCallSpan(span trace.Span, err error, sv Served) {
	if span == nil {
		return
	}
	if err == nil {
		span.SetAttributes(attribute.String(attrStatusCode, "OK"), attribute.Int(attrAttempts, sv.Attempts), attribute.String(attrServedBy, sv.Source.String()))
		span.End()
		return
	}
	code := codeName(statusCode(err))
	span.SetAttributes(attribute.String(attrStatusCode, code), attribute.Int(attrAttempts, sv.Attempts),
		attribute.String(attrServedBy, sv.Source.String()), attribute.String(attrErrorType, code))
	span.SetStatus(codes.Error, err.Error())
	span.End()
}

// attemptSpan starts the span of one attempt on the primary (nil when the
// call has no span).
func (s *Suite) attemptSpan(ctx context.Context, parent trace.Span, method string, n int, backoff time.Duration, probe bool) (context.Context, trace.Span) {
	if parent == nil {
		return ctx, nil
	}
	tr := s.tel.tracerFor()
	if tr == nil {
		return ctx, nil
	}
	name := "Attempt." + spanName(method)
	if n == 1 && !probe {
		return tr.Start(ctx, name, firstAttemptOpts...)
	}
	return tr.Start(ctx, name, trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(
		attribute.Int(attrAttempt, n),
		attribute.Int64(attrBackoff, backoff.Milliseconds()),
		attribute.Bool(attrProbe, probe),
	))
}

func endAttemptSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err == nil {
		span.SetAttributes(attribute.String(attrStatusCode, "OK"))
		span.End()
		return
	}
	span.SetAttributes(attribute.String(attrStatusCode, codeName(statusCode(err))))
	span.SetStatus(codes.Error, err.Error())
	span.End()
}

// stepObserver returns the chain observer that records a span and metrics per
// fallback step.
func (s *Suite) stepObserver(ms *methodState, method string, parent trace.Span) fallback.StepObserver {
	return func(ctx context.Context, step fallback.Step) (context.Context, func(fallback.Served, error)) {
		ctx, span := s.stepSpan(ctx, parent, step)
		return ctx, func(sv fallback.Served, err error) {
			s.recordStep(ctx, ms, method, step.Kind(), err)
			_, isCache := step.(*fallback.CacheStep)
			endStepSpan(span, sv, err, isCache)
		}
	}
}

// stepSpan starts the span of one fallback step (nil when tracing is off).
func (s *Suite) stepSpan(ctx context.Context, parent trace.Span, step fallback.Step) (context.Context, trace.Span) {
	if parent == nil {
		return ctx, nil
	}
	tr := s.tel.tracerFor()
	if tr == nil {
		return ctx, nil
	}
	attrs := []attribute.KeyValue{attribute.String(attrStep, step.Kind())}
	if a, ok := step.(*fallback.AlternateStep); ok {
		attrs = append(attrs, attribute.String(attrAlternate, a.Name()))
	}
	return tr.Start(ctx, "rebound.fallback."+step.Kind(), trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(attrs...))
}

// endStepSpan records a step's result on its span.
func endStepSpan(span trace.Span, sv fallback.Served, err error, isCache bool) {
	if span == nil {
		return
	}
	result := "answered"
	if err != nil {
		result = "failed"
		span.SetStatus(codes.Error, err.Error())
	}
	span.SetAttributes(attribute.String(attrStepResult, result))
	if isCache {
		span.SetAttributes(attribute.String(attrCacheResult, cacheLookupResult(err)))
	}
	if sv.Source == fallback.SourceCache {
		span.SetAttributes(attribute.Int64(attrCacheAge, sv.Age.Milliseconds()))
	}
	span.End()
}

// recordStep counts one fallback step (and, for the cache, its lookup).
func (s *Suite) recordStep(ctx context.Context, ms *methodState, method, kind string, err error) {
	result := "answered"
	if err != nil {
		result = "failed"
	}
	if s.tel.fallbacks.Enabled(ctx) {
		s.tel.fallbacks.Add(ctx, 1, metric.WithAttributes(
			attribute.String(attrMethod, metricMethod(ms, method)),
			attribute.String(attrStep, kind),
			attribute.String(attrStepResult, result)))
	}
	if kind == "cache" && s.tel.cacheLookups.Enabled(ctx) {
		s.tel.cacheLookups.Add(ctx, 1, metric.WithAttributes(
			attribute.String(attrMethod, metricMethod(ms, method)),
			attribute.String(attrCacheResult, cacheLookupResult(err))))
	}
}

func cacheLookupResult(err error) string {
	switch {
	case err == nil:
		return "hit"
	case errorsIs(err, fallback.ErrCacheStale):
		return "stale"
	case errorsIs(err, fallback.ErrCacheMiss):
		return "miss"
	default:
		return "error"
	}
}

// recordCall counts a finished call (when metrics are on).
func (s *Suite) recordCall(ctx context.Context, ms *methodState, ts *targetState, method string, sv Served, retryDelay time.Duration) {
	if s.tel.calls.Enabled(ctx) {
		if sv.Source == fallback.SourcePrimary {
			s.tel.calls.Add(ctx, 1, ts.primaryCallOpt...)
		} else {
			s.tel.calls.Add(ctx, 1, metric.WithAttributes(
				attribute.String(attrMethod, metricMethod(ms, method)),
				attribute.String(attrServerAddress, ts.target),
				attribute.String(attrServedBy, sv.Source.String())))
		}
	}
	if sv.Attempts > 1 {
		if s.tel.retries.Enabled(ctx) {
			s.tel.retries.Record(ctx, int64(sv.Attempts-1), metric.WithAttributeSet(ts.attrs))
		}
		if s.tel.retryDelay.Enabled(ctx) {
			s.tel.retryDelay.Record(ctx, retryDelay.Seconds(), metric.WithAttributeSet(ts.attrs))
		}
	}
}

// recordAttempt counts one attempt on the primary.
func (s *Suite) recordAttempt(ctx context.Context, ts *targetState, code grpccodes.Code) {
	if !s.tel.attempts.Enabled(ctx) {
		return
	}
	if code == grpccodes.OK {
		s.tel.attempts.Add(ctx, 1, ts.okAttemptOpt...)
		return
	}
	s.tel.attempts.Add(ctx, 1, metric.WithAttributeSet(ts.attrs), metric.WithAttributes(attribute.String(attrStatusCode, codeName(code))))
}

// initAttrs precomputes the metric attributes of one (method, target).
func (ts *targetState) initAttrs(method string) {
	ts.attrs = attribute.NewSet(attribute.String(attrMethod, method), attribute.String(attrServerAddress, ts.target))
	ts.okAttemptOpt = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(
		attribute.String(attrMethod, method), attribute.String(attrServerAddress, ts.target), attribute.String(attrStatusCode, "OK")))}
	ts.primaryCallOpt = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(
		attribute.String(attrMethod, method), attribute.String(attrServerAddress, ts.target), attribute.String(attrServedBy, "primary")))}
}

// onTransition records a pattern state change.
func (s *Suite) onTransition(method, target string, from, to pattern.State) {
	ctx := context.Background()
	if s.tel != nil && s.tel.transitions.Enabled(ctx) {
		s.tel.transitions.Add(ctx, 1, metric.WithAttributes(
			attribute.String(attrMethod, method), attribute.String(attrServerAddress, target),
			attribute.String(attrPatternFrom, from.String()), attribute.String(attrPatternTo, to.String())))
	}
}
