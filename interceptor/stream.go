package interceptor

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/rebound-grpc/rebound/fallback"
	"github.com/rebound-grpc/rebound/internal/policy"
	"github.com/rebound-grpc/rebound/pattern"
)

// defaultReplayBufferBytes bounds the client messages a stream keeps for
// replay before it is committed, as grpc-go's per-RPC retry buffer does.
// A stream whose sent messages outgrow it is committed: no more retries.
const defaultReplayBufferBytes = 256 << 10

// maxPooledReplayBuffer is the largest replay buffer kept for reuse.
const maxPooledReplayBuffer = 16 << 10

var replayPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// StreamClientInterceptor returns the stream interceptor of the Suite.
//
// A stream is protected as a unary call is, with the semantics of gRFC A6:
// the method's pattern is consulted when the stream opens, and until the
// stream is committed — response headers or a response message received, or
// more client messages sent than the replay buffer holds (256 KiB) — a
// retryable failure re-opens it (same attempts, backoff, budget, deadline
// and pushback rules as unary, with grpc-previous-rpc-attempts) and replays
// the client messages sent so far, CloseSend included. Once committed, the
// stream is the caller's: its errors are returned unchanged and no message
// is ever delivered twice.
//
// When the primary cannot answer, the method's fallback chain can: an
// alternate target re-opens the stream (replaying the client messages), and
// for a server-streaming method the cache step serves the messages of the
// last complete successful stream with the same request and scope (at most
// fallback.MaxStreamMessages messages and fallback.MaxStreamBytes bytes).
// Static and function steps answer unary calls only.
//
// The per-attempt timeout bounds an attempt until the stream is committed;
// after that the stream lives until the caller's deadline. The server sees
// the caller's deadline, not the per-attempt timeout.
//
// Each attempt's outcome is reported to the pattern once: a failed attempt
// when it fails, the committed attempt when the stream ends (io.EOF is a
// success; the caller's cancellation is neutral), so a long healthy stream
// counts as one success. A stream admitted as a recovery probe reports the
// probe's success when it commits, so that it does not hold the probe slot
// for its lifetime; a failure after that counts as an ordinary failure. A
// stream the caller abandons without reading it to its end reports nothing
// more.
func (s *Suite) StreamClientInterceptor() grpc.StreamClientInterceptor {
	return s.stream
}

// stream is the stream interceptor.
func (s *Suite) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	// The same start as unary's, written out: a shared helper is not
	// inlined and cost the unary healthy path 1.5 ns (+4.5 %).
	ms := s.method(method)
	pol := ms.pol
	ts := s.target(ms.holder, targetOf(cc))
	if pol.FollowHealth && !ts.healthWatch.Load() {
		s.watchHealth(ts, cc, pol.HealthService, ms.holder.name)
	}
	ctx, span := s.callSpan(ctx, ms, ts, method)
	w := &clientStream{s: s, ms: ms, ts: ts, ctx: ctx, desc: desc, cc: cc, method: method, streamer: streamer, opts: opts,
		prio: priorityOf(ctx, pol.Priority), serverOnly: desc.ServerStreams && !desc.ClientStreams, span: span}
	w.replayable = w.canRecover()
	w.buf.limit = s.cfg.replayBytes
	var start time.Time // zero: not measured (see pattern.Pattern)
	if ms.timed {
		start = time.Now()
	}
	d := ts.pattern.ShouldAttemptRecovery(start, w.prio)
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case !d.Allow:
		w.startChainLocked(&ShortCircuitError{Method: method, Target: ts.target, State: ts.pattern.State(), RetryAfter: d.RetryAfter}, true)
	default:
		if err := w.openLocked(&w.first, start, d.Probe); err != nil {
			w.recoverLocked(err)
		} else if !w.replayable {
			w.commitLocked(false) // nothing could re-open it: skip the replay buffer
		}
	}
	if w.final != nil {
		return nil, w.final
	}
	return w, nil
}

// source is what a stream attempt talks to.
type source uint8

const (
	srcPrimary source = iota
	srcAlternate
	srcCache
)

// attempt is one stream opened on the primary, an alternate or the cache.
type attempt struct {
	cs    grpc.ClientStream
	src   source
	alt   *fallback.AlternateStep // srcAlternate
	start time.Time               // zero when not measured
	ttfb  time.Duration           // time to commit, when measured
	probe bool                    // admitted as a recovery probe
	// probeDone: the probe's success was reported at commit.
	probeDone bool
	// sendDead: a SendMsg failed with io.EOF; later messages are only
	// buffered, and the failure surfaces on RecvMsg. Guarded by mu.
	sendDead bool
	// Per-attempt timeout, until commit.
	cancel   context.CancelFunc
	timer    *time.Timer
	timedOut atomic.Bool
	served   fallback.Served // srcCache: the age of the entry
	span     trace.Span      // the attempt's (or fallback step's) span, nil when tracing is off
}

// release stops the attempt's timer and cancels its context, if any.
func (at *attempt) release() {
	if at.timer != nil {
		at.timer.Stop()
	}
	if at.cancel != nil {
		at.cancel()
	}
}

// clientStream is the grpc.ClientStream the interceptor returns. Before it
// is committed every switch of attempt happens under mu; after, cur never
// changes and the methods delegate to it without locking.
type clientStream struct {
	s          *Suite
	ms         *methodState
	ts         *targetState
	ctx        context.Context
	desc       *grpc.StreamDesc
	cc         *grpc.ClientConn
	method     string
	streamer   grpc.Streamer
	opts       []grpc.CallOption
	prio       pattern.Priority
	serverOnly bool       // server streaming: one request, many replies
	replayable bool       // some failure could re-open the stream
	span       trace.Span // the call span, nil when tracing is off

	committed atomic.Bool // cur is final; set under mu, read without it
	ended     atomic.Bool // the outcome was reported
	cur       *attempt
	first     attempt
	// rec records the replies of a server stream for the cache step; set
	// before commit, then owned by the receiving goroutine.
	rec *fallback.StreamRecorder

	mu        sync.Mutex
	buf       replayBuffer
	closeSent bool
	attempts  int   // attempts made on the primary
	final     error // the stream failed before it was committed
	key       string
	keyErr    error
	rc        *call           // retry decisions, built at the first failure
	pending   *pendingFailure // the failed attempt just released, handed to rc
	// The fallback chain, once started: cur is nil until a step opens a source.
	chain      []fallback.Step
	chainCause error
	nextStep   int
	stepErrs   []error
}

// canRecover reports whether a failure before commit could re-open the
// stream: retries, an alternate, or the cache of a server stream.
func (w *clientStream) canRecover() bool {
	pol := w.ms.pol
	if pol.MaxAttempts > 1 {
		return true
	}
	if len(pol.Steps) == 0 || fallback.InChain(w.ctx) {
		return false
	}
	for _, st := range pol.Steps {
		if st.Kind == policy.StepAlternate || st.Kind == policy.StepCache && w.serverOnly {
			return true
		}
	}
	return false
}

// openLocked opens an attempt on the primary and replays the buffer to it.
func (w *clientStream) openLocked(at *attempt, start time.Time, probe bool) error {
	pol := w.ms.pol
	at.src, at.start, at.probe = srcPrimary, start, probe
	var backoff time.Duration
	if w.rc != nil {
		backoff = w.rc.prevDelay
	}
	actx, aspan := w.s.attemptSpan(w.ctx, w.span, w.method, w.attempts+1, backoff, probe)
	at.span = aspan
	if w.attempts > 0 {
		actx = metadata.AppendToOutgoingContext(actx, previousAttemptsKey, strconv.Itoa(w.attempts))
	}
	if pol.PerAttemptTimeout > 0 && w.replayable {
		actx, at.cancel = context.WithCancel(actx)
		at.timer = time.AfterFunc(pol.PerAttemptTimeout, func() {
			if !w.committed.Load() {
				at.timedOut.Store(true)
				at.cancel()
			}
		})
	}
	w.cur = at
	w.attempts++
	cs, err := w.streamer(actx, w.desc, w.cc, w.method, w.opts...)
	if err != nil {
		return err
	}
	at.cs = cs
	w.replayLocked(at)
	return nil
}

// replayLocked sends the buffered client messages, and CloseSend, to at.
// A send that fails marks the attempt dead: its error surfaces on RecvMsg.
func (w *clientStream) replayLocked(at *attempt) {
	err := w.buf.replay(at.cs.SendMsg)
	if err != nil {
		at.sendDead = true
		return
	}
	if w.closeSent {
		_ = at.cs.CloseSend()
	}
}

// commitLocked makes cur the stream's final attempt. byResponse is set when
// the server answered (headers or a message), rather than the buffer overflowing.
func (w *clientStream) commitLocked(byResponse bool) {
	at := w.cur
	if at.timer != nil {
		at.timer.Stop()
	}
	if byResponse && !at.start.IsZero() {
		at.ttfb = time.Since(at.start)
	}
	w.buf.free()
	if at.src == srcPrimary && w.key != "" && w.ms.cacheStep != nil {
		w.rec = &fallback.StreamRecorder{}
	}
	if byResponse && at.probe && at.src != srcCache {
		w.report(at, codes.OK, true)
		at.probeDone = true
	}
	if at.src == srcAlternate {
		w.s.recordStep(w.ctx, w.ms, w.method, "alternate", nil)
	}
	if len(w.opts) > 0 {
		setServed(w.opts, w.served(at))
	}
	w.committed.Store(true)
}

// served says how at answered the stream.
func (w *clientStream) served(at *attempt) fallback.Served {
	sv := fallback.Served{Source: fallback.SourcePrimary, Attempts: w.attempts}
	switch at.src {
	case srcAlternate:
		sv.Source, sv.Name = fallback.SourceAlternate, at.alt.Name()
	case srcCache:
		sv.Source, sv.Age = fallback.SourceCache, at.served.Age
	}
	return sv
}

// finishLocked ends a stream that failed before it was committed.
func (w *clientStream) finishLocked(err error) {
	w.final = err
	w.cur = nil
	w.buf.free()
	w.ended.Store(true)
	sv := fallback.Served{Source: fallback.SourceNone, Attempts: w.attempts}
	setServed(w.opts, sv)
	w.s.recordCall(w.ctx, w.ms, w.ts, w.method, sv, w.slept())
	endCallSpan(w.span, err, sv)
}

// slept is the total backoff the stream slept.
func (w *clientStream) slept() time.Duration {
	if w.rc == nil {
		return 0
	}
	return w.rc.slept
}

// report gives one attempt's outcome to the pattern guarding its target.
func (w *clientStream) report(at *attempt, code codes.Code, probe bool) {
	var (
		now time.Time
		lat time.Duration
	)
	if code != codes.OK || !at.start.IsZero() {
		now = time.Now()
	}
	if !at.start.IsZero() {
		lat = at.ttfb
		if lat == 0 {
			lat = now.Sub(at.start)
		}
	}
	switch at.src {
	case srcPrimary:
		w.s.report(w.ctx, w.ts, w.ms.pol, now, code, lat, probe)
	case srcAlternate:
		p := at.alt.Pattern()
		if p == nil {
			return
		}
		o := pattern.Outcome{Code: code, Latency: lat, Probe: probe}
		if code == codes.OK {
			p.HandleSuccess(now, o)
			return
		}
		if w.ctx.Err() != nil {
			o.Code = codes.Canceled // the caller's deadline, not the alternate's failure
		}
		p.HandleFailure(now, o)
	}
}

// end reports the outcome of the committed attempt, once, and stores a
// complete server stream for the cache step.
func (w *clientStream) end(err error) {
	if !w.ended.CompareAndSwap(false, true) {
		return
	}
	at := w.cur
	at.release()
	code := codes.OK
	if err != nil && err != io.EOF {
		code = status.Code(err)
	}
	switch {
	case at.src == srcCache:
	case !at.probeDone:
		w.report(at, code, at.probe)
	case code != codes.OK:
		w.report(at, code, false)
	}
	var final error
	if code != codes.OK {
		final = err
	}
	endAttemptSpan(at.span, final)
	if at.src == srcPrimary {
		w.s.recordAttempt(w.ctx, w.ts, code)
	}
	sv := w.served(at)
	w.s.recordCall(w.ctx, w.ms, w.ts, w.method, sv, w.slept())
	endCallSpan(w.span, final, sv)
	if code == codes.OK && w.rec != nil {
		if e, ok := w.rec.Entry(time.Now()); ok {
			w.s.storeEntry(w.method, w.key, e, w.ms.cacheStep.MaxStaleness()/2)
		}
		w.rec = nil
	}
}

// recoverLocked handles the failure err of cur before commit: a retry on the
// primary, the next step of the chain, or the end of the stream. On return
// cur is a fresh attempt, or nil with the chain pending or final set.
func (w *clientStream) recoverLocked(err error) {
	at := w.cur
	w.cur = nil
	err, code := w.failedLocked(at, err)
	if at.src == srcAlternate {
		w.stepErrs = append(w.stepErrs, fmt.Errorf("alternate %s: %w", at.alt.Name(), err))
		return // the chain goes on with its next step
	}
	var trailer metadata.MD
	pol := w.ms.pol
	if at.cs != nil && pol.MaxAttempts > 1 && pol.HonorPushback {
		trailer = at.cs.Trailer()
	}
	c := w.rc
	if c == nil {
		c = &call{s: w.s, ms: w.ms, ts: w.ts, method: w.method, opts: w.opts, prio: w.prio, ctx: w.ctx}
		w.rc = c
	}
	c.attempts, c.lastErr, c.lastCode, c.lastTrailer, c.timedOut = w.attempts, err, code, trailer, at.timedOut.Load()
	c.pending, w.pending = w.pending, nil
	defer c.flushPending() // no retry covered the last failure
	for w.replayable && pol.MaxAttempts > 1 && c.retryable() {
		delay, stop := c.Next()
		if stop {
			break
		}
		if !sleepCtx(w.ctx, delay) {
			// Canceled or timed out while backing off: the caller's context decides.
			w.startChainLocked(status.FromContextError(w.ctx.Err()).Err(), false)
			return
		}
		start := time.Now()
		d := w.ts.pattern.ShouldAttemptRecovery(start, w.prio)
		if !d.Allow {
			c.flushPending()
			w.startChainLocked(c.lastErr, true)
			return
		}
		next := &attempt{}
		err := w.openLocked(next, start, d.Probe)
		if err == nil {
			return
		}
		w.cur = nil
		err, code := w.failedLocked(next, err)
		c.attempts, c.lastErr, c.lastCode, c.lastTrailer, c.timedOut = w.attempts, err, code, nil, next.timedOut.Load()
		c.pending, w.pending = w.pending, nil
	}
	c.flushPending()
	w.startChainLocked(c.lastErr, false)
}

// failedLocked releases a failed attempt and reports it; it returns the
// error and code to go on with (a per-attempt timeout is DEADLINE_EXCEEDED).
func (w *clientStream) failedLocked(at *attempt, err error) (error, codes.Code) {
	at.release()
	code := status.Code(err)
	if at.timedOut.Load() && w.ctx.Err() == nil {
		code = codes.DeadlineExceeded
		err = status.Errorf(codes.DeadlineExceeded, "rebound: %s attempt %d timed out after %v before the stream was committed", w.method, w.attempts, w.ms.pol.PerAttemptTimeout)
	}
	if at.src == srcPrimary && w.ms.deferFailures && !at.probe && w.ms.pol.MaxAttempts > 1 && w.replayable {
		// Reported once the stream knows whether a retry follows (see pendingFailure).
		w.pending = &pendingFailure{now: time.Now(), code: code}
		w.ts.failed()
	} else {
		w.report(at, code, at.probe)
	}
	endAttemptSpan(at.span, err)
	switch at.src {
	case srcPrimary:
		w.s.recordAttempt(w.ctx, w.ts, code)
	case srcAlternate:
		w.s.recordStep(w.ctx, w.ms, w.method, "alternate", err)
	}
	return err, code
}

// startChainLocked ends the primary's part of the stream with cause: the
// fallback chain takes over when cause is a code it is for (or the pattern
// refused the primary), else the stream fails with cause. The chain itself
// runs when the stream next needs a source (ensureSourceLocked).
func (w *clientStream) startChainLocked(cause error, refused bool) {
	w.cur = nil
	pol := w.ms.pol
	if w.ms.chain == nil || fallback.InChain(w.ctx) || !refused && !pol.FallbackOn.Has(status.Code(cause)) {
		w.finishLocked(cause)
		return
	}
	usable := false
	for _, st := range pol.Steps {
		usable = usable || st.Kind == policy.StepAlternate || st.Kind == policy.StepCache && w.serverOnly
	}
	if !usable {
		w.finishLocked(cause)
		return
	}
	w.chain, w.chainCause, w.nextStep = w.ms.chain.Steps(), cause, 0
}

// ensureSourceLocked runs the pending fallback chain until a step opens a
// source or none is left.
func (w *clientStream) ensureSourceLocked() {
	for w.cur == nil && w.final == nil {
		if w.nextStep >= len(w.chain) {
			w.finishLocked(&fallback.Error{Cause: w.chainCause, Steps: w.stepErrs})
			return
		}
		st := w.chain[w.nextStep]
		w.nextStep++
		if err := w.ctx.Err(); err != nil {
			w.stepErrs = append(w.stepErrs, fmt.Errorf("%s: not started: %w", st.Kind(), err))
			w.finishLocked(&fallback.Error{Cause: w.chainCause, Steps: w.stepErrs})
			return
		}
		switch st := st.(type) {
		case *fallback.AlternateStep:
			w.openAlternateLocked(st)
		case *fallback.CacheStep:
			w.serveCacheLocked(st)
		default:
			w.stepErrs = append(w.stepErrs, fmt.Errorf("%s: answers unary calls only", st.Kind()))
		}
	}
}

// openAlternateLocked re-opens the stream on an alternate target, with the
// caller's metadata and deadline, and replays the buffer to it.
func (w *clientStream) openAlternateLocked(st *fallback.AlternateStep) {
	at := &attempt{src: srcAlternate, alt: st}
	if p := st.Pattern(); p != nil {
		d := p.ShouldAttemptRecovery(time.Now(), w.prio)
		if !d.Allow {
			w.stepErrs = append(w.stepErrs, fmt.Errorf("alternate %s: circuit %s, retry after %v", st.Name(), p.State(), d.RetryAfter.Round(time.Millisecond)))
			return
		}
		at.probe = d.Probe
	}
	conn := w.s.cfg.alternates[st.Name()]
	at.start = time.Now()
	w.cur = at
	actx, span := w.s.stepSpan(w.ctx, w.span, st)
	at.span = span
	cs, err := conn.NewStream(fallback.WithinChain(actx), w.desc, w.method, w.opts...)
	if err != nil {
		w.recoverLocked(err)
		return
	}
	at.cs = cs
	w.replayLocked(at)
}

// serveCacheLocked serves a server stream from the last complete stream the
// primary answered for the same key.
func (w *clientStream) serveCacheLocked(st *fallback.CacheStep) {
	switch {
	case !w.serverOnly:
		w.stepErrs = append(w.stepErrs, fmt.Errorf("cache: serves server-streaming methods only"))
		return
	case w.keyErr != nil:
		w.stepErrs = append(w.stepErrs, fmt.Errorf("cache: %w", w.keyErr))
		return
	case w.key == "":
		w.stepErrs = append(w.stepErrs, fmt.Errorf("cache: no request was sent: %w", fallback.ErrCacheMiss))
		return
	}
	_, span := w.s.stepSpan(w.ctx, w.span, st)
	cs, served, err := st.Stream(w.ctx, w.key, w.replyType())
	w.s.recordStep(w.ctx, w.ms, w.method, "cache", err)
	endStepSpan(span, served, err, true)
	if err != nil {
		w.stepErrs = append(w.stepErrs, err)
		return
	}
	w.cur = &attempt{src: srcCache, cs: &cachedClientStream{ctx: w.ctx, c: cs}, served: served}
	w.commitLocked(true)
}

// replyType is the Go type of the method's replies, when it is registered.
func (w *clientStream) replyType() protoreflect.MessageType {
	if d := w.ms.pol.Descriptor; d != nil {
		if mt, err := protoregistry.GlobalTypes.FindMessageByName(d.Output().FullName()); err == nil {
			return mt
		}
	}
	return nil
}

// noteRequestLocked derives the cache key of a server stream from its request.
func (w *clientStream) noteRequestLocked(m any) {
	if !w.serverOnly || w.ms.cacheStep == nil || w.key != "" || w.keyErr != nil || fallback.InChain(w.ctx) {
		return
	}
	w.key, w.keyErr = w.ms.cacheStep.Key(w.ctx, w.method, m)
}

// SendMsg implements grpc.ClientStream. Before commit the message is kept
// for replay; if the current attempt is found dead (io.EOF), the message is
// only kept and nil returned: the failure surfaces on RecvMsg, which
// re-opens the stream and replays it.
func (w *clientStream) SendMsg(m any) error {
	if w.committed.Load() {
		return w.cur.cs.SendMsg(m)
	}
	w.mu.Lock()
	if w.committed.Load() {
		w.mu.Unlock()
		return w.cur.cs.SendMsg(m)
	}
	if w.final != nil {
		w.mu.Unlock()
		return io.EOF
	}
	w.noteRequestLocked(m)
	if !w.buf.add(m) {
		// Too much to replay (or not a proto.Message): the stream is committed
		// to its current source, opened now if the chain is pending.
		w.ensureSourceLocked()
		if w.final != nil {
			w.mu.Unlock()
			return io.EOF
		}
		if !w.committed.Load() {
			w.commitLocked(false)
		}
		at := w.cur
		w.mu.Unlock()
		return at.cs.SendMsg(m)
	}
	at := w.cur
	if at == nil || at.sendDead {
		w.mu.Unlock()
		return nil
	}
	w.mu.Unlock()
	err := at.cs.SendMsg(m)
	if err == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case at != w.cur:
		return nil // a new attempt replayed m
	case w.committed.Load():
		return err
	case err == io.EOF:
		at.sendDead = true
		return nil
	}
	// The message could not be sent at all (grpc refused it): another
	// attempt would fail the same way.
	w.commitLocked(false)
	return err
}

// CloseSend implements grpc.ClientStream; before commit it is replayed too.
func (w *clientStream) CloseSend() error {
	if w.committed.Load() {
		return w.cur.cs.CloseSend()
	}
	w.mu.Lock()
	if w.committed.Load() {
		w.mu.Unlock()
		return w.cur.cs.CloseSend()
	}
	w.closeSent = true
	at := w.cur
	skip := at == nil || at.sendDead
	w.mu.Unlock()
	if skip {
		return nil
	}
	return at.cs.CloseSend()
}

// RecvMsg implements grpc.ClientStream. Before commit a failure re-opens the
// stream, or falls back; the first reply (or the response headers) commits it.
func (w *clientStream) RecvMsg(m any) error {
	if w.committed.Load() {
		return w.received(m, w.cur.cs.RecvMsg(m))
	}
	w.mu.Lock()
	for {
		if w.committed.Load() {
			w.mu.Unlock()
			return w.received(m, w.cur.cs.RecvMsg(m))
		}
		w.ensureSourceLocked()
		if w.final != nil {
			err := w.final
			w.mu.Unlock()
			return err
		}
		if w.committed.Load() {
			continue // the cache answered
		}
		at := w.cur
		w.mu.Unlock()
		err := at.cs.RecvMsg(m)
		w.mu.Lock()
		switch {
		case at != w.cur:
			continue // only the receiving side switches attempts; defensive
		case w.committed.Load():
			// Committed meanwhile by Header or an overflowing SendMsg.
		case err == nil || err == io.EOF:
			w.commitLocked(true)
		default:
			if md, _ := at.cs.Header(); md != nil {
				w.commitLocked(true) // the server had answered with headers: committed
				break
			}
			w.recoverLocked(err)
			continue
		}
		w.mu.Unlock()
		return w.received(m, err)
	}
}

// received finishes a RecvMsg of the committed stream.
func (w *clientStream) received(m any, err error) error {
	if err != nil {
		w.end(err)
		return err
	}
	if w.rec != nil {
		if pm, ok := m.(proto.Message); !ok || !w.rec.Record(pm) {
			w.rec = nil
		}
	}
	if !w.desc.ServerStreams {
		w.end(nil) // the one reply of a unary-response stream ends it
	}
	return nil
}

// Header implements grpc.ClientStream. Headers commit the stream. A nil
// header with a nil error means the current attempt ended without headers:
// RecvMsg then reports its status, or re-opens the stream.
func (w *clientStream) Header() (metadata.MD, error) {
	if w.committed.Load() {
		return w.cur.cs.Header()
	}
	w.mu.Lock()
	w.ensureSourceLocked()
	if w.final != nil {
		w.mu.Unlock()
		return nil, nil
	}
	at := w.cur
	committed := w.committed.Load()
	w.mu.Unlock()
	md, err := at.cs.Header()
	if !committed && md != nil && err == nil {
		w.mu.Lock()
		if at == w.cur && !w.committed.Load() {
			w.commitLocked(true)
		}
		w.mu.Unlock()
	}
	return md, err
}

// Trailer implements grpc.ClientStream: the trailer of the current attempt.
func (w *clientStream) Trailer() metadata.MD {
	if at := w.current(); at != nil {
		return at.cs.Trailer()
	}
	return nil
}

// Context implements grpc.ClientStream: the current attempt's context, or
// the caller's when no attempt is open.
func (w *clientStream) Context() context.Context {
	if at := w.current(); at != nil {
		return at.cs.Context()
	}
	return w.ctx
}

// current returns the current attempt, nil when none is open. Once the
// stream is committed cur no longer changes and is read without the lock.
func (w *clientStream) current() *attempt {
	if w.committed.Load() {
		return w.cur
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur
}

// sleepCtx sleeps d, or until ctx is done; it reports whether it slept.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// replayBuffer keeps the client messages of a stream before commit, each as
// a 4-byte little-endian length and its wire bytes. The caller may reuse a
// message once SendMsg returns, so the bytes, not the message, are kept.
type replayBuffer struct {
	limit int     // bytes kept at most (WithReplayBuffer)
	b     *[]byte // from replayPool
	typ   protoreflect.MessageType
	full  bool
}

// add keeps m; it reports false when m does not fit (or is not a
// proto.Message), after which the buffer keeps nothing more.
func (r *replayBuffer) add(m any) bool {
	pm, ok := m.(proto.Message)
	if r.full || !ok || pm == nil {
		r.full = true
		return false
	}
	typ := pm.ProtoReflect().Type()
	if r.typ == nil {
		r.typ = typ
	} else if r.typ != typ {
		r.full = true
		return false
	}
	if r.b == nil {
		r.b = replayPool.Get().(*[]byte)
	}
	buf := *r.b
	n := len(buf)
	buf = append(buf, 0, 0, 0, 0)
	buf, err := proto.MarshalOptions{}.MarshalAppend(buf, pm)
	if err != nil || len(buf) > r.limit {
		*r.b = buf[:n]
		r.free()
		r.full = true
		return false
	}
	binary.LittleEndian.PutUint32(buf[n:], uint32(len(buf)-n-4))
	*r.b = buf
	return true
}

// replay sends every kept message, each unmarshalled into a fresh message.
func (r *replayBuffer) replay(send func(any) error) error {
	if r.b == nil {
		return nil
	}
	buf := *r.b
	for len(buf) >= 4 {
		n := binary.LittleEndian.Uint32(buf)
		m := r.typ.New().Interface()
		if err := proto.Unmarshal(buf[4:4+n], m); err != nil {
			return err
		}
		if err := send(m); err != nil {
			return err
		}
		buf = buf[4+n:]
	}
	return nil
}

// free returns the buffer to the pool; nothing more is kept.
func (r *replayBuffer) free() {
	r.full = true
	if r.b == nil {
		return
	}
	if cap(*r.b) <= maxPooledReplayBuffer {
		*r.b = (*r.b)[:0]
		replayPool.Put(r.b)
	}
	r.b = nil
}

// cachedClientStream serves a recorded server stream.
type cachedClientStream struct {
	ctx context.Context
	c   *fallback.CachedStream
}

func (c *cachedClientStream) Header() (metadata.MD, error) { return metadata.MD{}, nil }
func (c *cachedClientStream) Trailer() metadata.MD         { return nil }
func (c *cachedClientStream) CloseSend() error             { return nil }
func (c *cachedClientStream) Context() context.Context     { return c.ctx }
func (c *cachedClientStream) SendMsg(any) error            { return io.EOF }

func (c *cachedClientStream) RecvMsg(m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return status.Error(codes.Internal, "rebound: the reply is not a proto.Message")
	}
	err := c.c.Next(pm)
	if err != nil && err != io.EOF {
		return status.Error(codes.Internal, "rebound: "+err.Error())
	}
	return err
}
