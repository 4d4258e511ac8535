package interceptor

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/sethvargo/go-retry"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/rebound-grpc/rebound/fallback"
	"github.com/rebound-grpc/rebound/internal/policy"
	"github.com/rebound-grpc/rebound/pattern"
)

// Metadata keys of gRFC A6.
const (
	pushbackKey         = "grpc-retry-pushback-ms"
	previousAttemptsKey = "grpc-previous-rpc-attempts"
)

// maxPushback caps a server's pushback, whatever it asks.
const maxPushback = policy.MaxBackoffCapMs * time.Millisecond

// minAttemptRoom is the least time a retry must have left before the caller's
// deadline once its backoff is slept; less and it is not started.
const minAttemptRoom = time.Millisecond

// attemptOpts carries the call options of one attempt plus the trailer
// option rebound adds to read pushback. Pooled, so the healthy path does not
// allocate.
type attemptOpts struct {
	trailer metadata.MD
	opts    []grpc.CallOption
}

var attemptOptsPool = sync.Pool{New: func() any { return &attemptOpts{opts: make([]grpc.CallOption, 0, 8)} }}

func targetOf(cc *grpc.ClientConn) string {
	if cc == nil {
		return ""
	}
	return cc.Target()
}

// unary is the unary interceptor: pattern gate, first attempt, and, only when
// that fails, the retry loop and the fallback chain.
func (s *Suite) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	ms := s.method(method)
	pol := ms.pol
	ts := s.target(ms.holder, targetOf(cc))
	if pol.FollowHealth && !ts.healthWatch.Load() {
		s.watchHealth(ts, cc, pol.HealthService, ms.holder.name)
	}
	ctx, span := s.callSpan(ctx, ms, ts, method)
	if pol.HedgeAttempts > 1 {
		return s.hedge(ctx, ms, ts, span, method, req, reply, cc, invoker, opts)
	}
	var start time.Time // zero: not measured (see pattern.Pattern)
	if ms.timed {
		start = time.Now()
	}
	prio := priorityOf(ctx, pol.Priority)
	d := ts.pattern.ShouldAttemptRecovery(start, prio)
	if !d.Allow {
		c := &call{s: s, ms: ms, ts: ts, method: method, req: req, reply: reply, cc: cc, invoker: invoker, opts: opts, prio: prio, span: span}
		return c.shortCircuited(ctx, d)
	}
	actx, aspan := s.attemptSpan(ctx, span, method, 1, 0, d.Probe)
	var (
		err      error
		trailer  metadata.MD
		timedOut bool
	)
	if pol.PerAttemptTimeout > 0 {
		tctx, cancel := context.WithTimeout(actx, pol.PerAttemptTimeout)
		trailer, err = s.invoke(tctx, ts, pol, method, req, reply, cc, invoker, opts)
		timedOut = err != nil && attemptTimedOut(ctx, tctx, err)
		cancel()
	} else {
		trailer, err = s.invoke(actx, ts, pol, method, req, reply, cc, invoker, opts)
	}
	endAttemptSpan(aspan, err)
	var (
		now time.Time
		lat time.Duration
	)
	if ms.timed {
		lat = time.Since(start)
		now = start.Add(lat)
	}
	code := codes.OK
	if err != nil {
		code = status.Code(err)
		if now.IsZero() {
			now = time.Now()
		}
	}
	var pending *pendingFailure
	if err != nil && ms.deferFailures && !d.Probe && pol.MaxAttempts > 1 {
		// Reported once the call knows whether a retry follows (see pendingFailure).
		pending = &pendingFailure{now: now, code: code, lat: lat}
		ts.failed()
	} else {
		s.reportLoad(ctx, ts, pol, now, code, lat, d.Probe, loadReport(pol, trailer))
	}
	s.recordAttempt(ctx, ts, code)
	if err == nil {
		s.succeeded(ctx, ms, method, req, reply, opts)
		s.recordCall(ctx, ms, ts, method, Served{Attempts: 1}, 0)
		endCallSpan(span, nil, Served{Attempts: 1})
		return nil
	}
	c := &call{s: s, ms: ms, ts: ts, method: method, req: req, reply: reply, cc: cc, invoker: invoker, opts: opts, prio: prio, span: span,
		attempts: 1, lastErr: err, lastCode: code, lastTrailer: trailer, timedOut: timedOut, pending: pending}
	return c.retryAndFallback(ctx)
}

// invoke runs one attempt. When the method may retry, honours pushback and
// the target is degraded (it failed recently), it also returns the attempt's
// trailer for grpc-retry-pushback-ms.
func (s *Suite) invoke(ctx context.Context, ts *targetState, pol *policy.Method, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts []grpc.CallOption) (metadata.MD, error) {
	if !pol.WantsLoad && (pol.MaxAttempts <= 1 || !pol.HonorPushback || ts.degraded.Load() == 0) {
		return nil, invoker(ctx, method, req, reply, cc, opts...)
	}
	ao := attemptOptsPool.Get().(*attemptOpts)
	ao.opts = append(ao.opts[:0], opts...)
	ao.opts = append(ao.opts, grpc.Trailer(&ao.trailer))
	err := invoker(ctx, method, req, reply, cc, ao.opts...)
	var trailer metadata.MD
	if err != nil || pol.WantsLoad {
		trailer = ao.trailer
	}
	ao.trailer = nil
	clear(ao.opts)
	ao.opts = ao.opts[:0]
	attemptOptsPool.Put(ao)
	return trailer, err
}

// succeeded caches the reply of a call the primary answered when the
// method's chain has a cache step, and tells ServedBy options.
func (s *Suite) succeeded(ctx context.Context, ms *methodState, method string, req, reply any, opts []grpc.CallOption) {
	if ms.cacheStep != nil {
		s.store(ctx, ms, method, req, reply)
	}
	if len(opts) > 0 {
		setServed(opts, Served{Attempts: 1})
	}
}

// report gives one attempt's outcome to the pattern and the budget. A failure
// caused by the caller (its context done) is reported as Canceled: neutral.
func (s *Suite) report(ctx context.Context, ts *targetState, pol *policy.Method, now time.Time, code codes.Code, lat time.Duration, probe bool) {
	s.reportLoad(ctx, ts, pol, now, code, lat, probe, nil)
}

// reportLoad is report with the server's ORCA load report, if any.
func (s *Suite) reportLoad(ctx context.Context, ts *targetState, pol *policy.Method, now time.Time, code codes.Code, lat time.Duration, probe bool, load *pattern.LoadReport) {
	if code == codes.OK {
		ts.pattern.HandleSuccess(now, pattern.Outcome{Code: code, Latency: lat, Probe: probe, Load: load})
		ts.budget.OnSuccess(now)
		ts.succeeded()
		return
	}
	ts.failed()
	if callerDone(ctx, code, now) {
		code = codes.Canceled
	}
	ts.pattern.HandleFailure(now, pattern.Outcome{Code: code, Latency: lat, Probe: probe, Load: load})
	if code != codes.Canceled && !pol.FailureCodes.Has(code) && !pol.RetryableCodes.Has(code) {
		// The server answered (NOT_FOUND, INVALID_ARGUMENT, ...): healthy for the budget.
		ts.budget.OnSuccess(now)
	}
}

// callerDone reports whether a failure is the caller's doing: its context is
// done, or the code is DEADLINE_EXCEEDED and the caller's deadline is (all but)
// reached — the server may see the propagated deadline expire a moment before
// the client's timer fires.
func callerDone(ctx context.Context, code codes.Code, now time.Time) bool {
	if ctx.Err() != nil {
		return true
	}
	if code != codes.DeadlineExceeded {
		return false
	}
	dl, ok := ctx.Deadline()
	return ok && dl.Sub(now) < deadlineSlack
}

// attemptTimedOut reports whether err is the per-attempt timeout of actx
// firing, rather than the caller's deadline (ctx).
func attemptTimedOut(ctx, actx context.Context, err error) bool {
	now := time.Now()
	code := status.Code(err)
	if code != codes.DeadlineExceeded && code != codes.Canceled || callerDone(ctx, codes.DeadlineExceeded, now) {
		return false
	}
	if actx.Err() == context.DeadlineExceeded {
		return true
	}
	dl, ok := actx.Deadline()
	return ok && dl.Sub(now) < deadlineSlack
}

// deadlineSlack is how close to the caller's deadline a DEADLINE_EXCEEDED is
// taken as the caller's own.
const deadlineSlack = 5 * time.Millisecond

// call is the state of one call once it left the healthy path. It implements
// retry.Backoff for go-retry.
type call struct {
	s       *Suite
	ms      *methodState
	ts      *targetState
	method  string
	req     any
	reply   any
	cc      *grpc.ClientConn
	invoker grpc.UnaryInvoker
	opts    []grpc.CallOption
	prio    pattern.Priority
	span    trace.Span // the call span, nil when tracing is off

	ctx         context.Context
	attempts    int
	lastErr     error
	lastCode    codes.Code
	lastTrailer metadata.MD
	timedOut    bool // the last attempt hit its per-attempt timeout
	prevDelay   time.Duration
	slept       time.Duration     // total backoff slept
	refused     *pattern.Decision // the pattern refused a retry
	seeded      bool
	pending     *pendingFailure // the last failed attempt, not yet reported
}

// pendingFailure is a failed attempt whose report to the pattern waits until
// the call knows whether a retry follows. For patterns that trip on failures
// (exponential_backoff, partial_recovery), a failure that a retry then
// covers is not counted: they trip on calls that fail, so that a server
// failing 30 % of attempts at random, or half of them in a brownout, is not
// taken for a dead one, while every call to a dead server still fails and
// trips them. Probes are always reported at once.
type pendingFailure struct {
	now  time.Time
	code codes.Code
	lat  time.Duration
}

// flushPending reports the pending failure: no retry covers it.
func (c *call) flushPending() {
	if p := c.pending; p != nil {
		c.pending = nil
		c.s.report(c.ctx, c.ts, c.ms.pol, p.now, p.code, p.lat, false)
	}
}

// retryable reports whether the last failure may be retried at all.
func (c *call) retryable() bool {
	pol := c.ms.pol
	if callerDone(c.ctx, c.lastCode, time.Now()) {
		return false
	}
	return pol.RetryableCodes.Has(c.lastCode) || c.timedOut
}

// stop records why no further retry is sent, and tells go-retry to stop.
func (c *call) stop(reason string) (time.Duration, bool) {
	c.flushPending()
	if c.span != nil {
		c.span.AddEvent(eventRetryStopped, trace.WithAttributes(attribute.String(attrStopReason, reason)))
	}
	return 0, true
}

// Next implements retry.Backoff: the delay before the next attempt, or stop.
// It is called only after a retryable failure.
func (c *call) Next() (time.Duration, bool) {
	pol := c.ms.pol
	if c.attempts >= pol.MaxAttempts {
		return c.stop("max_attempts")
	}
	var delay time.Duration
	if pb, ok := pushback(c.lastTrailer); ok {
		if pb < 0 {
			return c.stop("server_pushback") // the server asked for no retry
		}
		delay = min(pb, maxPushback)
	} else {
		delay = pol.Backoff.Delay(c.attempts-1, c.prevDelay, rand.Float64())
	}
	now := time.Now()
	if dl, ok := c.ctx.Deadline(); ok && dl.Sub(now) < delay+minAttemptRoom {
		return c.stop("deadline")
	}
	if !c.ts.budget.TryWithdraw(now) {
		c.s.budgetExhausted(c.ctx, c.ts, c.method)
		return c.stop("retry_budget")
	}
	c.ts.budgetOK()
	c.pending = nil // a retry covers this failure
	c.prevDelay = delay
	c.slept += delay
	if c.span != nil {
		c.span.AddEvent(eventBackoff, trace.WithAttributes(attribute.Int(attrAttempt, c.attempts+1), attribute.Int64(attrBackoff, delay.Milliseconds())))
	}
	return delay, false
}

// pushback parses grpc-retry-pushback-ms (gRFC A6): ok is false when absent;
// a value that is not a non-negative integer means "do not retry" (-1).
func pushback(md metadata.MD) (time.Duration, bool) {
	if md == nil {
		return 0, false
	}
	vals := md.Get(pushbackKey)
	if len(vals) == 0 {
		return 0, false
	}
	if len(vals) > 1 {
		return -1, true
	}
	n, err := strconv.ParseInt(vals[0], 10, 64)
	if err != nil || n < 0 {
		return -1, true
	}
	if n > int64(maxPushback/time.Millisecond) {
		return maxPushback, true
	}
	return time.Duration(n) * time.Millisecond, true
}

// attempt runs the next attempt (c.attempts counts those made so far).
func (c *call) attempt(ctx context.Context) error {
	if !c.seeded {
		// The first attempt already ran on the healthy path: seed the loop with it.
		c.seeded = true
		if c.retryable() {
			return retry.RetryableError(c.lastErr)
		}
		return c.lastErr
	}
	pol := c.ms.pol
	start := time.Now()
	d := c.ts.pattern.ShouldAttemptRecovery(start, c.prio)
	if !d.Allow {
		c.refused = &d
		if c.span != nil {
			c.span.AddEvent(eventShortCircuit, trace.WithAttributes(
				attribute.String(attrPatternState, c.ts.pattern.State().String()),
				attribute.Int64(attrRetryAfter, d.RetryAfter.Milliseconds())))
		}
		return c.lastErr
	}
	actx, aspan := c.s.attemptSpan(ctx, c.span, c.method, c.attempts+1, c.prevDelay, d.Probe)
	actx = metadata.AppendToOutgoingContext(actx, previousAttemptsKey, strconv.Itoa(c.attempts))
	var cancel context.CancelFunc
	if pol.PerAttemptTimeout > 0 {
		actx, cancel = context.WithTimeout(actx, pol.PerAttemptTimeout)
	}
	c.attempts++
	trailer, err := c.s.invoke(actx, c.ts, pol, c.method, c.req, c.reply, c.cc, c.invoker, c.opts)
	c.timedOut = cancel != nil && err != nil && attemptTimedOut(ctx, actx, err)
	if cancel != nil {
		cancel()
	}
	endAttemptSpan(aspan, err)
	lat := time.Since(start)
	code := codes.OK
	if err != nil {
		code = status.Code(err)
	}
	if err != nil && c.ms.deferFailures && !d.Probe {
		c.pending = &pendingFailure{now: start.Add(lat), code: code, lat: lat}
		c.ts.failed()
	} else {
		c.s.reportLoad(ctx, c.ts, pol, start.Add(lat), code, lat, d.Probe, loadReport(pol, trailer))
	}
	c.s.recordAttempt(ctx, c.ts, code)
	if err == nil {
		return nil
	}
	c.lastErr, c.lastCode, c.lastTrailer = err, code, trailer
	if c.retryable() {
		return retry.RetryableError(err)
	}
	return err
}

// retryAndFallback runs the retries after a failed first attempt, then the
// fallback chain if the call still failed with a code the chain is for.
func (c *call) retryAndFallback(ctx context.Context) error {
	c.ctx = ctx
	defer c.flushPending()
	pol := c.ms.pol
	if pol.MaxAttempts > 1 && c.retryable() {
		err := retry.Do(ctx, c, c.attempt)
		if err == nil {
			if c.ms.cacheStep != nil {
				c.s.store(ctx, c.ms, c.method, c.req, c.reply)
			}
			return c.done(ctx, Served{Attempts: c.attempts}, nil)
		}
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			// Canceled or timed out while backing off: the caller's context decides.
			return c.fallbackOrErr(ctx, status.FromContextError(ctx.Err()).Err())
		}
	} else if pol.MaxAttempts > 1 {
		c.stop("not_retryable")
	}
	c.flushPending()
	if c.refused != nil {
		return c.fallback(ctx, c.lastErr)
	}
	return c.fallbackOrErr(ctx, c.lastErr)
}

// fallbackOrErr runs the fallback chain when cause's code is one it is for.
func (c *call) fallbackOrErr(ctx context.Context, cause error) error {
	if len(c.ms.pol.Steps) == 0 || !c.ms.pol.FallbackOn.Has(status.Code(cause)) {
		return c.done(ctx, Served{Source: fallback.SourceNone, Attempts: c.attempts}, cause)
	}
	return c.fallback(ctx, cause)
}

// shortCircuited handles a call the pattern did not admit: fallback at once.
func (c *call) shortCircuited(ctx context.Context, d pattern.Decision) error {
	state := c.ts.pattern.State()
	if c.span != nil {
		c.span.AddEvent(eventShortCircuit, trace.WithAttributes(
			attribute.String(attrPatternState, state.String()),
			attribute.Int64(attrRetryAfter, d.RetryAfter.Milliseconds())))
	}
	if c.s.tel.shortCircuits.Enabled(ctx) {
		c.s.tel.shortCircuits.Add(ctx, 1, metric.WithAttributeSet(c.ts.attrs))
	}
	return c.fallback(ctx, &ShortCircuitError{Method: c.method, Target: c.ts.target, State: state, RetryAfter: d.RetryAfter})
}

// done ends a call that left the healthy path: ServedBy options, metrics and
// the call span.
func (c *call) done(ctx context.Context, sv Served, err error) error {
	setServed(c.opts, sv)
	c.s.recordCall(ctx, c.ms, c.ts, c.method, sv, c.slept)
	endCallSpan(c.span, err, sv)
	return err
}
