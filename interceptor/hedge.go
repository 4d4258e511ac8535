package interceptor

import (
	"context"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Hedging (gRFC A6): the first attempt is sent at once; while no reply has
// come, another attempt is sent every hedging delay, up to the policy's
// attempts. A non-fatal failure fires the next hedge at once; a fatal one
// ends the call. The first success wins: every attempt decodes into its own
// message and only the winner's is copied into the caller's reply; the
// others are cancelled at once, and the call returns only after they have
// returned, so nothing writes into anything of the caller's afterwards.
// Hedges beyond the first are paid from the target's retry budget and each
// attempt asks the recovery pattern, so an outage cannot multiply load.
//
// Hedging replaces retries for a method (as in gRFC A6: a method has a retry
// or a hedging policy). Sending hedges to an alternate target is not done:
// alternates answer only from the fallback chain, after the hedges failed.

// hedgeResult is one attempt's end.
type hedgeResult struct {
	n     int // 1-based attempt number
	reply proto.Message
	err   error
	lat   time.Duration
	probe bool
	span  trace.Span
}

// hedge runs a hedged call.
func (s *Suite) hedge(ctx context.Context, ms *methodState, ts *targetState, span trace.Span, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts []grpc.CallOption) error {
	pol := ms.pol
	prio := priorityOf(ctx, pol.Priority)
	c := &call{s: s, ms: ms, ts: ts, method: method, req: req, reply: reply, cc: cc, invoker: invoker, opts: opts, prio: prio, span: span, ctx: ctx}
	dst, ok := reply.(proto.Message)
	if !ok || dst == nil {
		// Not a protobuf reply: attempts could not decode into their own messages.
		return status.Error(codes.Internal, "rebound: hedging needs a proto.Message reply")
	}
	delay := ms.hedgeDelay(pol.HedgeDelay, pol.HedgePercentile)

	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan hedgeResult, pol.HedgeAttempts)
	var cancels []context.CancelFunc
	defer func() {
		for _, f := range cancels {
			f()
		}
	}()
	inFlight := 0
	launch := func(n int) bool {
		now := time.Now()
		d := ts.pattern.ShouldAttemptRecovery(now, prio)
		if !d.Allow {
			if c.refused == nil {
				c.refused = &d
			}
			return false
		}
		if n > 1 && !ts.budget.TryWithdraw(now) {
			s.budgetExhausted(ctx, ts, method)
			return false
		}
		actx, aspan := s.attemptSpan(hctx, span, method, n, 0, d.Probe)
		if aspan != nil {
			aspan.SetAttributes(attribute.Bool(attrHedge, n > 1))
		}
		if n > 1 {
			actx = metadata.AppendToOutgoingContext(actx, previousAttemptsKey, strconv.Itoa(n-1))
		}
		if pol.PerAttemptTimeout > 0 {
			var acancel context.CancelFunc
			actx, acancel = context.WithTimeout(actx, pol.PerAttemptTimeout)
			cancels = append(cancels, acancel)
		}
		r := dst.ProtoReflect().New().Interface()
		inFlight++
		c.attempts = n
		go func() {
			start := time.Now()
			err := invoker(actx, method, req, r, cc, opts...)
			results <- hedgeResult{n: n, reply: r, err: err, lat: time.Since(start), probe: d.Probe, span: aspan}
		}()
		return true
	}

	launched := 0
	if launch(1) {
		launched = 1
	}
	timer := time.NewTimer(delay)
	defer timer.Stop()
	var (
		winner  *hedgeResult
		lastErr error
		fatal   bool
	)
	next := func() {
		if launched < pol.HedgeAttempts && !fatal && winner == nil && launch(launched+1) {
			launched++
			timer.Reset(delay)
		}
	}
	for inFlight > 0 {
		select {
		case <-timer.C:
			next()
		case res := <-results:
			inFlight--
			code := status.Code(res.err)
			endAttemptSpan(res.span, res.err)
			now := time.Now()
			switch {
			case winner != nil || (fatal && res.err != nil):
				// A loser cancelled by us: neutral for the pattern.
				s.report(hctx, ts, pol, now, codes.Canceled, res.lat, res.probe)
				continue
			case res.err == nil:
				s.report(ctx, ts, pol, now, codes.OK, res.lat, res.probe)
				s.recordAttempt(ctx, ts, codes.OK)
				ms.hedgeLat.record(res.lat)
				w := res
				winner = &w
				cancel()
				continue
			}
			s.report(ctx, ts, pol, now, code, res.lat, res.probe)
			s.recordAttempt(ctx, ts, code)
			lastErr = res.err
			c.lastErr, c.lastCode = res.err, code
			if !pol.HedgeNonFatal.Has(code) || callerDone(ctx, code, now) {
				fatal = true
				cancel()
				continue
			}
			next() // a non-fatal failure fires the next hedge at once
		}
	}
	if launched > 1 && s.tel.hedges.Enabled(ctx) {
		s.tel.hedges.Record(ctx, int64(launched-1), metric.WithAttributeSet(ts.attrs))
	}
	if winner != nil {
		proto.Reset(dst)
		proto.Merge(dst, winner.reply)
		if ms.cacheStep != nil {
			s.store(ctx, ms, method, req, reply)
		}
		return c.done(ctx, Served{Attempts: launched}, nil)
	}
	if launched == 0 {
		return c.shortCircuited(ctx, *c.refused)
	}
	if ctx.Err() != nil {
		lastErr = status.FromContextError(ctx.Err()).Err()
	}
	c.attempts = launched
	if c.refused != nil {
		return c.fallback(ctx, lastErr)
	}
	return c.fallbackOrErr(ctx, lastErr)
}

// hedgeDelay is the delay between hedges: the method's observed latency
// percentile once enough attempts were seen, else the fixed delay.
func (ms *methodState) hedgeDelay(fixed time.Duration, percentile float64) time.Duration {
	if percentile > 0 {
		if d, ok := ms.hedgeLat.quantile(percentile / 100); ok {
			return d
		}
	}
	return fixed
}

// latencyHist is a lock-free log-scale histogram of successful attempt
// latencies: bucket i counts latencies below histBase·2^((i+1)/4). Counts are
// halved every histDecay records, so it follows the recent distribution.
type latencyHist struct {
	buckets [histBuckets]atomic.Int64
	total   atomic.Int64
}

const (
	histBuckets = 80
	histBase    = 50 * time.Microsecond // 80 quarter-octaves: 50µs .. ~54 min
	histDecay   = 4096
	histMinimum = 20 // records before the percentile is trusted
)

func histBucket(d time.Duration) int {
	if d <= histBase {
		return 0
	}
	i := int(4 * math.Log2(float64(d)/float64(histBase)))
	return min(max(i, 0), histBuckets-1)
}

func (h *latencyHist) record(d time.Duration) {
	h.buckets[histBucket(d)].Add(1)
	if h.total.Add(1)%histDecay == 0 {
		for i := range h.buckets {
			h.buckets[i].Store(h.buckets[i].Load() / 2)
		}
	}
}

// quantile returns the upper bound of the bucket holding quantile q.
func (h *latencyHist) quantile(q float64) (time.Duration, bool) {
	var counts [histBuckets]int64
	var n int64
	for i := range h.buckets {
		counts[i] = h.buckets[i].Load()
		n += counts[i]
	}
	if n < histMinimum {
		return 0, false
	}
	rank := int64(math.Ceil(q * float64(n)))
	var seen int64
	for i, c := range counts {
		seen += c
		if seen >= rank {
			return time.Duration(float64(histBase) * math.Exp2(float64(i+1)/4)), true
		}
	}
	return time.Duration(float64(histBase) * math.Exp2(float64(histBuckets)/4)), true
}
