package interceptor

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/sethvargo/go-retry"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

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
	var start time.Time // zero: not measured (see pattern.Pattern)
	if ms.timed {
		start = time.Now()
	}
	prio := priorityOf(ctx, pol.Priority)
	d := ts.pattern.ShouldAttemptRecovery(start, prio)
	if !d.Allow {
		c := &call{s: s, ms: ms, ts: ts, method: method, req: req, reply: reply, cc: cc, invoker: invoker, opts: opts, prio: prio}
		return c.fallback(ctx, c.shortCircuit(d))
	}
	var (
		err      error
		trailer  metadata.MD
		timedOut bool
	)
	if pol.PerAttemptTimeout > 0 {
		actx, cancel := context.WithTimeout(ctx, pol.PerAttemptTimeout)
		err, trailer = s.invoke(actx, ts, pol, method, req, reply, cc, invoker, opts)
		timedOut = err != nil && attemptTimedOut(ctx, actx, err)
		cancel()
	} else {
		err, trailer = s.invoke(ctx, ts, pol, method, req, reply, cc, invoker, opts)
	}
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
	s.report(ctx, ts, pol, now, code, lat, d.Probe)
	if err == nil {
		s.succeeded(ctx, ms, method, req, reply, opts, 1)
		return nil
	}
	c := &call{s: s, ms: ms, ts: ts, method: method, req: req, reply: reply, cc: cc, invoker: invoker, opts: opts, prio: prio,
		attempts: 1, lastErr: err, lastCode: code, lastTrailer: trailer, timedOut: timedOut}
	return c.retryAndFallback(ctx)
}

// invoke runs one attempt. When the method may retry, honours pushback and
// the target is degraded (it failed recently), it also returns the attempt's
// trailer for grpc-retry-pushback-ms.
func (s *Suite) invoke(ctx context.Context, ts *targetState, pol *policy.Method, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts []grpc.CallOption) (error, metadata.MD) {
	if pol.MaxAttempts <= 1 || !pol.HonorPushback || ts.degraded.Load() == 0 {
		return invoker(ctx, method, req, reply, cc, opts...), nil
	}
	ao := attemptOptsPool.Get().(*attemptOpts)
	ao.opts = append(ao.opts[:0], opts...)
	ao.opts = append(ao.opts, grpc.Trailer(&ao.trailer))
	err := invoker(ctx, method, req, reply, cc, ao.opts...)
	var trailer metadata.MD
	if err != nil {
		trailer = ao.trailer
	}
	ao.trailer = nil
	clear(ao.opts)
	ao.opts = ao.opts[:0]
	attemptOptsPool.Put(ao)
	return err, trailer
}

// succeeded finishes a call the primary answered: the reply is cached when
// the method's chain has a cache step, and ServedBy options are told.
func (s *Suite) succeeded(ctx context.Context, ms *methodState, method string, req, reply any, opts []grpc.CallOption, attempts int) {
	if ms.cacheStep != nil {
		s.store(ctx, ms, method, req, reply)
	}
	if len(opts) > 0 {
		setServed(opts, Served{Attempts: attempts})
	}
}

// report gives one attempt's outcome to the pattern and the budget. A failure
// caused by the caller (its context done) is reported as Canceled: neutral.
func (s *Suite) report(ctx context.Context, ts *targetState, pol *policy.Method, now time.Time, code codes.Code, lat time.Duration, probe bool) {
	if code == codes.OK {
		ts.pattern.HandleSuccess(now, pattern.Outcome{Code: code, Latency: lat, Probe: probe})
		ts.budget.OnSuccess(now)
		ts.succeeded()
		return
	}
	ts.failed()
	if callerDone(ctx, code, now) {
		code = codes.Canceled
	}
	ts.pattern.HandleFailure(now, pattern.Outcome{Code: code, Latency: lat, Probe: probe})
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

	ctx         context.Context
	attempts    int
	lastErr     error
	lastCode    codes.Code
	lastTrailer metadata.MD
	timedOut    bool // the last attempt hit its per-attempt timeout
	prevDelay   time.Duration
	refused     *pattern.Decision // the pattern refused a retry
	seeded      bool
}

// retryable reports whether the last failure may be retried at all.
func (c *call) retryable() bool {
	pol := c.ms.pol
	if callerDone(c.ctx, c.lastCode, time.Now()) {
		return false
	}
	return pol.RetryableCodes.Has(c.lastCode) || c.timedOut
}

// Next implements retry.Backoff: the delay before the next attempt, or stop.
// It is called only after a retryable failure.
func (c *call) Next() (time.Duration, bool) {
	pol := c.ms.pol
	if c.attempts >= pol.MaxAttempts {
		return 0, true
	}
	var delay time.Duration
	if pb, ok := pushback(c.lastTrailer); ok {
		if pb < 0 {
			return 0, true // the server asked for no retry
		}
		delay = min(pb, maxPushback)
	} else {
		delay = pol.Backoff.Delay(c.attempts-1, c.prevDelay, rand.Float64())
	}
	now := time.Now()
	if dl, ok := c.ctx.Deadline(); ok && dl.Sub(now) < delay+minAttemptRoom {
		return 0, true
	}
	if !c.ts.budget.TryWithdraw(now) {
		c.s.cfg.logger.Debug("rebound retry budget exhausted", zap.String("method", c.method), zap.String("target", c.ts.target))
		return 0, true
	}
	c.prevDelay = delay
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

// attempt runs retry number c.attempts (1-based count of attempts made so far).
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
		return c.lastErr
	}
	actx := metadata.AppendToOutgoingContext(ctx, previousAttemptsKey, strconv.Itoa(c.attempts))
	var cancel context.CancelFunc
	if pol.PerAttemptTimeout > 0 {
		actx, cancel = context.WithTimeout(actx, pol.PerAttemptTimeout)
	}
	c.attempts++
	err, trailer := c.s.invoke(actx, c.ts, pol, c.method, c.req, c.reply, c.cc, c.invoker, c.opts)
	c.timedOut = cancel != nil && err != nil && attemptTimedOut(ctx, actx, err)
	if cancel != nil {
		cancel()
	}
	lat := time.Since(start)
	code := codes.OK
	if err != nil {
		code = status.Code(err)
	}
	c.s.report(ctx, c.ts, pol, start.Add(lat), code, lat, d.Probe)
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
	pol := c.ms.pol
	if pol.MaxAttempts > 1 && c.retryable() {
		err := retry.Do(ctx, c, c.attempt)
		if err == nil {
			c.s.succeeded(ctx, c.ms, c.method, c.req, c.reply, c.opts, c.attempts)
			return nil
		}
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			// Canceled or timed out while backing off: the caller's context decides.
			return c.fallbackOrErr(ctx, status.FromContextError(ctx.Err()).Err())
		}
	}
	if c.refused != nil {
		return c.fallback(ctx, c.lastErr)
	}
	return c.fallbackOrErr(ctx, c.lastErr)
}

// fallbackOrErr runs the fallback chain when cause's code is one it is for.
func (c *call) fallbackOrErr(ctx context.Context, cause error) error {
	if len(c.ms.pol.Steps) == 0 || !c.ms.pol.FallbackOn.Has(status.Code(cause)) {
		return cause
	}
	return c.fallback(ctx, cause)
}

// shortCircuit is the error of a call the pattern did not admit.
func (c *call) shortCircuit(d pattern.Decision) error {
	return &ShortCircuitError{Method: c.method, Target: c.ts.target, State: c.ts.pattern.State(), RetryAfter: d.RetryAfter}
}
