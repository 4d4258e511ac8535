package chaos_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/rebound-grpc/rebound/fallback"
	"github.com/rebound-grpc/rebound/fallback/rediscache"
	"github.com/rebound-grpc/rebound/interceptor"
	"github.com/rebound-grpc/rebound/internal/backendproc"
	"github.com/rebound-grpc/rebound/internal/faultserver"
	"github.com/rebound-grpc/rebound/internal/redistest"
	"github.com/rebound-grpc/rebound/internal/testpb"
	"github.com/rebound-grpc/rebound/pattern"
	reboundv1 "github.com/rebound-grpc/rebound/proto/rebound/v1"
)

var (
	flagDuration = flag.Duration("chaos.duration", 0, "length of TestChaos (default 30s, 5s with -short)")
	flagSeed     = flag.Uint64("chaos.seed", 1, "seed of the fault schedule and the calls")
)

func TestMain(m *testing.M) {
	redis.SetLogger(quietRedis{})
	goleak.VerifyTestMain(m)
}

const (
	echoMethod   = testpb.EchoService_Echo_FullMethodName
	listMethod   = testpb.EchoService_List_FullMethodName
	uploadMethod = testpb.EchoService_Upload_FullMethodName

	maxAttempts   = 3 // the policy of every method below
	listCount     = 5 // messages per List
	maxOvershoot  = 5 * time.Millisecond
	unaryWorkers  = 8
	streamWorkers = 2
)

// The Suite runs with pattern.DefaultBudgetConfig, audited by counting.
var (
	budgetTokens = pattern.DefaultBudgetConfig().MaxTokens
	budgetRatio  = pattern.DefaultBudgetConfig().Ratio
)

var (
	tenants = []string{"alpha", "beta", "gamma", "delta"}
	keys    = []string{"k0", "k1", "k2", "k3", "k4", "k5"}
)

// TestChaos drives calls through a Suite while faults change at random and
// checks the invariants of issue 10 throughout; see the package doc.
func TestChaos(t *testing.T) {
	d := *flagDuration
	if d == 0 {
		d = 30 * time.Second
		if testing.Short() {
			d = 5 * time.Second
		}
	}
	r := runChaos(t, d, 0)
	r.report(t)
	r.check(t, false)
}

// policies returns the policies of the chaos Suite: 3 attempts, a
// per-attempt timeout, then alternate, cache (scoped by tenant) and, for
// unary, a static reply.
func policies() []interceptor.Option {
	retry := &reboundv1.Retry{MaxAttempts: proto.Uint32(maxAttempts), InitialBackoffMs: proto.Uint32(5), MaxBackoffMs: proto.Uint32(40), PerAttemptTimeoutMs: proto.Uint32(120)}
	alt := &reboundv1.FallbackStep{Step: &reboundv1.FallbackStep_Alternate{Alternate: &reboundv1.AlternateStep{Name: "alt"}}}
	cache := &reboundv1.FallbackStep{Step: &reboundv1.FallbackStep_Cache{Cache: &reboundv1.CacheStep{MaxStalenessMs: 60_000, KeyMetadata: []string{faultserver.TenantKey}}}}
	static := &reboundv1.FallbackStep{Step: &reboundv1.FallbackStep_StaticReply{StaticReply: &reboundv1.StaticReplyStep{Text: `message: "static"`}}}
	// A breaker that trips on a sustained outage, not on a partial one, so
	// that retries are exercised too.
	breaker := &reboundv1.RecoveryPolicy_ExponentialBackoff{ExponentialBackoff: &reboundv1.ExponentialBackoff{
		Trip:        &reboundv1.Trip{ConsecutiveFailures: proto.Uint32(20), FailureRatePercent: proto.Float64(90), MinimumCalls: proto.Uint32(50)},
		OpenDelayMs: proto.Uint32(100), MaxOpenDelayMs: proto.Uint32(1000),
	}}
	return []interceptor.Option{
		interceptor.WithPolicy(echoMethod, &reboundv1.RecoveryPolicy{Pattern: breaker, Retry: retry, Fallback: &reboundv1.Fallback{Steps: []*reboundv1.FallbackStep{alt, cache, static}}}),
		interceptor.WithPolicy(listMethod, &reboundv1.RecoveryPolicy{Retry: retry, Fallback: &reboundv1.Fallback{Steps: []*reboundv1.FallbackStep{alt, cache}}}),
		interceptor.WithPolicy(uploadMethod, &reboundv1.RecoveryPolicy{Retry: retry, Fallback: &reboundv1.Fallback{Steps: []*reboundv1.FallbackStep{alt}}}),
	}
}

// sample is one reading of the process during a run.
type sample struct {
	at         time.Duration
	heap       uint64
	goroutines int
	calls      int64
}

// result is what a run measured.
type result struct {
	duration time.Duration
	seed     uint64
	// schedLag is the worst lateness of a 1 ms timer during the run: how long
	// the machine itself (2 cores, -race, other test packages) kept a ready
	// goroutine waiting. It is not rebound's, so the deadline check allows it.
	schedLag time.Duration
	redis    string // "" when Redis ran, else why not

	calls, streams    atomic.Int64
	bySource          [fallback.SourceNone + 1]atomic.Int64
	codesMu           sync.Mutex
	codes             map[codes.Code]int
	overshoots        histogram // per call: return time − deadline
	worst             time.Duration
	pcts              [4]time.Duration // p50, p99, p99.9, p100 of overshoots
	worstCall         string
	violations        []string
	violationCount    int
	peakGoroutines    int
	goroutinesBefore  int
	goroutinesAfter   int
	heapBefore        uint64
	heapAfter         uint64
	maxClientAttempts int
	maxServerAttempts int
	maxServerCall     string
	attempts          int64 // unary attempts to the primary target
	unaryCalls        int64 // unary calls that made an attempt
	deposits          int64 // unary attempts whose outcome refills the budget
	attemptOutcomes   map[codes.Code]int
	streamCommitted   atomic.Int64
	faults            map[string]int
	primaryKills      int
	samples           []sample
}

func (r *result) violate(format string, args ...any) {
	r.codesMu.Lock()
	defer r.codesMu.Unlock()
	r.violationCount++
	if len(r.violations) < 20 {
		r.violations = append(r.violations, fmt.Sprintf(format, args...))
	}
}

func (r *result) code(c codes.Code) {
	r.codesMu.Lock()
	r.codes[c]++
	r.codesMu.Unlock()
}

func (r *result) overshoot(d time.Duration, what string, err error, state *string) {
	r.codesMu.Lock()
	r.overshoots.add(d)
	if d > r.worst || r.overshoots.n == 1 {
		r.worst = d
		r.worstCall = fmt.Sprintf("%s: error %v; faults: %s", what, err, *state)
	}
	r.codesMu.Unlock()
}

// checkErr checks that a failed call's error is a meaningful gRPC status.
func (r *result) checkErr(what string, err error) {
	st, ok := status.FromError(err)
	if !ok {
		r.violate("%s: error %v (%T) is not a gRPC status", what, err, err)
		return
	}
	r.code(st.Code())
	switch st.Code() {
	case codes.OK, codes.Unknown:
		r.violate("%s: error %v has code %v; want a meaningful code (no server sends it here)", what, err, st.Code())
	}
}

// counter is the innermost client interceptor: it sees every attempt the
// Suite makes on the primary, counts them per call id and watches stream
// commits.
type counter struct {
	r        *result
	mu       sync.Mutex
	perCall  map[string]*callState
	attempts int64
	deposits int64
	calls    int64
	max      int
	outcomes map[codes.Code]int // of unary attempts
}

type callState struct {
	n         int
	committed bool // a response message was received on some attempt
}

func callID(ctx context.Context) string {
	md, _ := metadata.FromOutgoingContext(ctx)
	if v := md.Get(faultserver.CallIDKey); len(v) > 0 {
		return v[len(v)-1]
	}
	return ""
}

func (c *counter) begin(id string, stream bool) *callState {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs := c.perCall[id]
	if cs == nil {
		cs = &callState{}
		c.perCall[id] = cs
		if !stream {
			c.calls++
		}
	}
	cs.n++
	c.max = max(c.max, cs.n)
	if cs.n > maxAttempts {
		c.r.violate("call %s: attempt %d; the policy allows %d", id, cs.n, maxAttempts)
	}
	if stream && cs.committed {
		c.r.violate("stream %s: attempt %d after commit", id, cs.n)
	}
	return cs
}

// end forgets a call once it returned.
func (c *counter) end(id string) {
	c.mu.Lock()
	delete(c.perCall, id)
	c.mu.Unlock()
}

func (c *counter) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	c.begin(callID(ctx), false)
	err := invoker(ctx, method, req, reply, cc, opts...)
	c.mu.Lock()
	c.attempts++
	c.outcomes[status.Code(err)]++
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Canceled:
		// failures: they never refill the budget
	default:
		c.deposits++
	}
	c.mu.Unlock()
	return err
}

func (c *counter) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	st := c.begin(callID(ctx), true)
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	return &countedStream{ClientStream: cs, c: c, st: st}, nil
}

type countedStream struct {
	grpc.ClientStream
	c  *counter
	st *callState
}

func (s *countedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err == nil {
		s.c.mu.Lock()
		s.st.committed = true
		s.c.mu.Unlock()
	}
	return err
}

// env is the system under test.
type env struct {
	r       *result
	primary *backendproc.Proc
	alt     *faultserver.Server
	redis   *redistest.Server // nil without redis-server
	paused  bool
	suite   *interceptor.Suite
	cnt     *counter
	echo    testpb.EchoServiceClient
	streams testpb.EchoServiceClient
	conns   []*grpc.ClientConn
	rc      *redis.Client
	nextID  atomic.Int64
	state   atomic.Pointer[string] // the faults in force, for reports
	pf, af  faultserver.Fault
	rstate  string
}

func (e *env) setState() {
	up := "up"
	if !e.primary.Running() {
		up = "DOWN"
	}
	s := fmt.Sprintf("primary %s %v, alt %v, redis %s", up, e.pf, e.af, e.rstate)
	e.state.Store(&s)
}

func dialOpts() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDisableRetry(),
		// Reconnect quickly once a killed primary is back.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 200 * time.Millisecond}, MinConnectTimeout: 200 * time.Millisecond}),
	}
}

func setup(t *testing.T, r *result) *env {
	t.Helper()
	e := &env{r: r, rstate: "up"}
	e.primary = backendproc.Build(t).Start(t, "primary", "127.0.0.1:0")
	e.alt = faultserver.Start(t, faultserver.Options{Name: "alt"})
	var cache fallback.Cache
	if _, err := exec.LookPath("redis-server"); err == nil {
		e.redis = redistest.Start(t)
		e.rc = redis.NewClient(&redis.Options{Addr: e.redis.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1,
			DialTimeout: 50 * time.Millisecond, PoolTimeout: 50 * time.Millisecond, PoolSize: 16})
		cache = rediscache.New(e.rc, rediscache.WithTimeout(30*time.Millisecond))
	} else {
		r.redis = redistest.SkipMessage + "; the cache step uses a MemoryCache"
		t.Log(r.redis)
		cache = fallback.NewMemoryCache(8 << 20)
	}
	altCC, err := grpc.NewClient(e.alt.Addr, dialOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	e.conns = append(e.conns, altCC)
	e.cnt = &counter{r: r, perCall: map[string]*callState{}, outcomes: map[codes.Code]int{}}
	e.suite, err = interceptor.New(append(policies(), interceptor.WithAlternate("alt", altCC), interceptor.WithCache(cache))...)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(target string) *grpc.ClientConn {
		cc, err := grpc.NewClient(target, append(dialOpts(),
			grpc.WithChainUnaryInterceptor(e.suite.UnaryClientInterceptor(), e.cnt.unary),
			grpc.WithChainStreamInterceptor(e.suite.StreamClientInterceptor(), e.cnt.stream))...)
		if err != nil {
			t.Fatal(err)
		}
		e.conns = append(e.conns, cc)
		return cc
	}
	e.echo = testpb.NewEchoServiceClient(dial(e.primary.Addr()))
	// Streams use another target string for the same backend, so that they
	// have a retry budget of their own and the unary budget can be audited.
	e.streams = testpb.NewEchoServiceClient(dial("passthrough:///" + e.primary.Addr()))
	e.setState()
	return e
}

// close heals every fault and releases the clients (the servers stop in
// t.Cleanup).
func (e *env) close() {
	if e.paused {
		e.redis.Resume()
		e.paused = false
	}
	_ = e.suite.Close()
	for _, cc := range e.conns {
		_ = cc.Close()
	}
	if e.rc != nil {
		_ = e.rc.Close()
	}
}

func (e *env) newCall(rng *rand.Rand, minD, maxD time.Duration) (ctx context.Context, cancel context.CancelFunc, id, tenant, key string, deadline time.Time) {
	id = "c" + strconv.FormatInt(e.nextID.Add(1), 10)
	tenant = tenants[rng.IntN(len(tenants))]
	key = keys[rng.IntN(len(keys))]
	ctx, cancel = context.WithTimeout(context.Background(), minD+time.Duration(rng.Int64N(int64(maxD-minD))))
	deadline, _ = ctx.Deadline()
	ctx = metadata.AppendToOutgoingContext(ctx, faultserver.CallIDKey, id, faultserver.TenantKey, tenant)
	return
}

// checkReply checks a reply produced for tenant and text by source.
func (r *result) checkReply(what, msg, tenant, text string, src fallback.Source) {
	if src == fallback.SourceStatic {
		if msg != "static" {
			r.violate("%s: static reply %q", what, msg)
		}
		return
	}
	name, forTenant, gotText, ok := faultserver.ParseText(msg)
	switch {
	case !ok:
		r.violate("%s: reply %q from %v is not a server's", what, msg, src)
	case forTenant != tenant:
		r.violate("%s: tenant %s got a reply produced for tenant %q (from %v)", what, tenant, forTenant, src)
	case gotText != text:
		r.violate("%s: request %q got the reply to %q (from %v)", what, text, gotText, src)
	case src == fallback.SourceAlternate && name != "alt", src != fallback.SourceAlternate && name != "primary":
		r.violate("%s: reply from %q served as %v", what, name, src)
	}
}

func (e *env) unaryCall(rng *rand.Rand) {
	ctx, cancel, id, tenant, key, dl := e.newCall(rng, 20*time.Millisecond, 250*time.Millisecond)
	defer cancel()
	served := interceptor.Served{Source: fallback.SourceNone}
	start := time.Now()
	reply, err := e.echo.Echo(ctx, &testpb.EchoRequest{Message: key}, interceptor.ServedBy(&served))
	what := "Echo " + id
	e.r.overshoot(time.Since(dl), fmt.Sprintf("%s (%v, served %v)", what, dl.Sub(start).Round(time.Millisecond), served), err, e.state.Load())
	e.cnt.end(id)
	e.r.calls.Add(1)
	if err != nil {
		e.r.checkErr(what, err)
		return
	}
	e.r.code(codes.OK)
	e.r.bySource[served.Source].Add(1)
	e.r.checkReply(what, reply.GetMessage(), tenant, key, served.Source)
}

func (e *env) listCall(rng *rand.Rand) {
	ctx, cancel, id, tenant, key, dl := e.newCall(rng, 60*time.Millisecond, 400*time.Millisecond)
	defer cancel()
	defer e.cnt.end(id)
	e.r.streams.Add(1)
	what := "List " + id
	s, err := e.streams.List(ctx, &testpb.ListRequest{Message: key, Count: listCount})
	if err != nil {
		e.r.overshoot(time.Since(dl), what+" open", err, e.state.Load())
		e.r.checkErr(what, err)
		return
	}
	var n int64
	var last error
	defer func() { e.r.overshoot(time.Since(dl), what, last, e.state.Load()) }()
	for {
		m, err := s.Recv()
		last = err
		if errors.Is(err, io.EOF) {
			if n != listCount {
				e.r.violate("%s: ended after %d messages; want %d (lost messages)", what, n, listCount)
			}
			e.r.code(codes.OK)
			break
		}
		if err != nil {
			e.r.checkErr(what, err)
			break
		}
		if n == 0 {
			e.r.streamCommitted.Add(1)
		}
		if m.GetSeq() != n {
			e.r.violate("%s: message %d has seq %d (duplicate or lost message)", what, n, m.GetSeq())
		}
		src := fallback.SourcePrimary
		if name, _, _, _ := faultserver.ParseText(m.GetMessage()); name == "alt" {
			src = fallback.SourceAlternate
		}
		e.r.checkReply(what, m.GetMessage(), tenant, key, src)
		n++
	}
}

func (e *env) uploadCall(rng *rand.Rand) {
	ctx, cancel, id, tenant, _, dl := e.newCall(rng, 60*time.Millisecond, 400*time.Millisecond)
	defer cancel()
	defer e.cnt.end(id)
	e.r.streams.Add(1)
	what := "Upload " + id
	s, err := e.streams.Upload(ctx)
	if err != nil {
		e.r.overshoot(time.Since(dl), what+" open", err, e.state.Load())
		e.r.checkErr(what, err)
		return
	}
	for _, part := range []string{"a", "b", "c"} {
		if err := s.Send(&testpb.UploadRequest{Message: part}); err != nil {
			break // the status comes with CloseAndRecv
		}
	}
	reply, err := s.CloseAndRecv()
	e.r.overshoot(time.Since(dl), what, err, e.state.Load())
	if err != nil {
		e.r.checkErr(what, err)
		return
	}
	e.r.code(codes.OK)
	name, _, _, _ := faultserver.ParseText(reply.GetMessage())
	src := fallback.SourcePrimary
	if name == "alt" {
		src = fallback.SourceAlternate
	}
	e.r.checkReply(what, reply.GetMessage(), tenant, "abc", src)
	if reply.GetCount() != 3 {
		e.r.violate("%s: the server received %d messages; want 3 (replay lost or duplicated one)", what, reply.GetCount())
	}
}

// primaryFaults are the faults the injector sets on the primary.
var primaryFaults = []faultserver.Fault{
	{},
	{BlackHole: true, Rate: 0.3},
	{Delay: 80 * time.Millisecond, Rate: 0.5},
	{Code: codes.Unavailable, Rate: 0.5},
	{Code: codes.Unavailable, Pushback: "30", Rate: 0.7},
	{Code: codes.ResourceExhausted, Rate: 0.3},
	{Reset: true, Rate: 0.2},
	{FirstByte: 60 * time.Millisecond, Rate: 0.5},
	{SendThenFail: 2, Rate: 0.5},
	{Delay: 300 * time.Millisecond}, // slower than every deadline
}

// inject changes one fault at random and returns its name.
func (e *env) inject(t *testing.T, rng *rand.Rand) string {
	defer e.setState()
	switch rng.IntN(7) {
	case 0, 1:
		if e.primary.Running() {
			e.state.Store(ptr("primary being killed"))
			e.primary.Kill()
			return "primary SIGKILL"
		}
		e.primary.Restart()
		return "primary restart"
	case 2:
		f := primaryFaults[rng.IntN(len(primaryFaults))]
		e.primary.Set(f)
		e.pf = f
		return "primary " + f.String()
	case 3:
		e.primary.GoAway()
		return "primary GOAWAY"
	case 4:
		f := []faultserver.Fault{{}, {Code: codes.Unavailable}, {BlackHole: true, Rate: 0.5}, {Delay: 50 * time.Millisecond}}[rng.IntN(4)]
		e.alt.Set(f)
		e.af = f
		if f.Code != codes.OK {
			e.alt.ResetAll()
		}
		return "alt " + f.String()
	case 5:
		if e.redis == nil {
			return "redis (none)"
		}
		switch {
		case e.paused:
			e.redis.Resume()
			e.paused = false
			e.rstate = "up"
			return "redis resume"
		case rng.IntN(3) == 0:
			e.redis.Pause()
			e.paused = true
			e.rstate = "PAUSED"
			return "redis SIGSTOP"
		default:
			e.redis.Stop()
			e.redis.Restart() // data gone
			return "redis restart (data lost)"
		}
	default:
		if e.redis != nil && rng.IntN(2) == 0 && !e.paused {
			e.redis.Stop()
			e.rstate = "DOWN"
			e.setState()
			time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
			e.redis.Restart()
			e.rstate = "up"
			return "redis down 100-500ms"
		}
		e.primary.Set(faultserver.Fault{})
		e.alt.Set(faultserver.Fault{})
		e.pf, e.af = faultserver.Fault{}, faultserver.Fault{}
		return "heal primary and alt"
	}
}

func ptr[T any](v T) *T { return &v }

// quietRedis drops go-redis's log lines (dial failures while Redis is down
// are the point of the test).
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func heapNow() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// runChaos runs the scenario for d; with every > 0 it also samples the heap
// and goroutines every that often (the soak).
func runChaos(t *testing.T, d time.Duration, every time.Duration) *result {
	seed := *flagSeed
	r := &result{duration: d, seed: seed, codes: map[codes.Code]int{}, faults: map[string]int{}}
	e := setup(t, r)

	// Warm up (connections, the cache, lazily built state), then measure.
	warm := rand.New(rand.NewPCG(seed, 999))
	for range 50 {
		e.unaryCall(warm)
		e.listCall(warm)
	}
	r.goroutinesBefore = runtime.NumGoroutine()
	r.heapBefore = heapNow()
	start := time.Now()

	stop := make(chan struct{})
	lagDone := make(chan time.Duration)
	go func() { lagDone <- schedulerLag(stop) }()
	var wg sync.WaitGroup
	worker := func(i int, call func(*rand.Rand)) {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		defer func() {
			if p := recover(); p != nil {
				r.violate("worker %d panicked: %v", i, p)
			}
		}()
		for {
			select {
			case <-stop:
				return
			default:
			}
			call(rng)
		}
	}
	for i := range unaryWorkers {
		wg.Add(1)
		go worker(i, e.unaryCall)
	}
	for i := range streamWorkers {
		wg.Add(1)
		go worker(100+i, func(rng *rand.Rand) {
			if rng.IntN(2) == 0 {
				e.listCall(rng)
			} else {
				e.uploadCall(rng)
			}
		})
	}
	// The goroutine monitor.
	var monWG sync.WaitGroup
	monWG.Add(1)
	go func() {
		defer monWG.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		next := every
		lastPrune := time.Now()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			r.codesMu.Lock()
			r.peakGoroutines = max(r.peakGoroutines, runtime.NumGoroutine())
			r.codesMu.Unlock()
			if time.Since(lastPrune) > time.Second {
				// Forget the server-side counts of calls long finished.
				lastPrune = time.Now()
				horizon := e.nextID.Load() - 20_000
				keep := func(id string) bool {
					n, err := strconv.ParseInt(strings.TrimPrefix(id, "c"), 10, 64)
					return err != nil || n > horizon
				}
				e.primary.Prune(keep)
				e.alt.Prune(keep)
			}
			if every > 0 && time.Since(start) >= next {
				next += every
				s := sample{at: time.Since(start).Round(time.Second), heap: heapNow(), goroutines: runtime.NumGoroutine(), calls: r.calls.Load() + r.streams.Load()}
				r.codesMu.Lock()
				r.samples = append(r.samples, s)
				r.codesMu.Unlock()
				t.Logf("soak %v: heap %.1f MiB, goroutines %d, calls %d", s.at, float64(s.heap)/(1<<20), s.goroutines, s.calls)
			}
		}
	}()
	// The fault injector runs on the test goroutine (redistest may FailNow).
	frng := rand.New(rand.NewPCG(seed, 1000))
	for time.Since(start) < d {
		time.Sleep(time.Duration(150+frng.IntN(450)) * time.Millisecond)
		r.faults[e.inject(t, frng)]++
	}
	close(stop)
	wg.Wait()
	monWG.Wait()
	r.schedLag = <-lagDone

	r.primaryKills = e.primary.Kills()
	r.maxServerAttempts, r.maxServerCall = e.primary.MaxAttemptsPerCall()
	e.cnt.mu.Lock()
	r.maxClientAttempts, r.attempts, r.unaryCalls, r.deposits = e.cnt.max, e.cnt.attempts, e.cnt.calls, e.cnt.deposits
	r.attemptOutcomes = e.cnt.outcomes
	e.cnt.perCall = nil
	e.cnt.mu.Unlock()
	e.primary.Prune(func(string) bool { return false })
	e.alt.Prune(func(string) bool { return false })
	e.close()
	// Let the closed connections' goroutines exit before counting.
	for i := 0; i < 100 && runtime.NumGoroutine() > r.goroutinesBefore; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	r.goroutinesAfter = runtime.NumGoroutine()
	// The run's own bookkeeping (one overshoot per call) is not the Suite's.
	for i, p := range []float64{.5, .99, .999} {
		r.pcts[i] = r.overshoots.quantile(p)
	}
	r.pcts[3] = r.worst
	r.heapAfter = heapNow()
	return r
}

// histogram counts durations in 50µs buckets over ±1s (fixed memory, so a
// soak's bookkeeping does not grow); the exact maximum is kept beside it.
type histogram struct {
	n       int64
	buckets [2 * histRange / histWidth]int64
}

const (
	histWidth = 50 * time.Microsecond
	histRange = time.Second
)

func (h *histogram) add(d time.Duration) {
	i := int((min(max(d, -histRange), histRange-1) + histRange) / histWidth)
	h.buckets[i]++
	h.n++
}

// quantile returns the upper bound of the bucket holding quantile q.
func (h *histogram) quantile(q float64) time.Duration {
	target := int64(q * float64(h.n))
	var seen int64
	for i, c := range h.buckets {
		seen += c
		if seen > target {
			return time.Duration(i+1)*histWidth - histRange
		}
	}
	return histRange
}

func (r *result) report(t *testing.T) {
	t.Logf("chaos: %v, seed %d, %d unary calls and %d streams (%.0f/s)", r.duration, r.seed, r.calls.Load(), r.streams.Load(),
		float64(r.calls.Load()+r.streams.Load())/r.duration.Seconds())
	if r.redis != "" {
		t.Logf("redis: %s", r.redis)
	}
	var src []string
	for s := fallback.SourcePrimary; s <= fallback.SourceNone; s++ {
		if n := r.bySource[s].Load(); n > 0 {
			src = append(src, fmt.Sprintf("%v %d", s, n))
		}
	}
	t.Logf("unary replies by source: %s", strings.Join(src, ", "))
	var cs []string
	for c, n := range r.codes {
		cs = append(cs, fmt.Sprintf("%v %d", c, n))
	}
	slices.Sort(cs)
	t.Logf("outcomes: %s", strings.Join(cs, ", "))
	var fs []string
	for f, n := range r.faults {
		fs = append(fs, fmt.Sprintf("%s ×%d", f, n))
	}
	slices.Sort(fs)
	t.Logf("faults injected: %s", strings.Join(fs, "; "))
	t.Logf("worst overshoot: %v, %s", r.worst, r.worstCall)
	t.Logf("deadline overshoot (return − deadline): p50 %v, p99 %v, p99.9 %v, p100 %v (limit %v + scheduling lag %v)",
		r.pcts[0], r.pcts[1], r.pcts[2], r.pcts[3], maxOvershoot, r.schedLag)
	t.Logf("attempts per call: max %d at the client, %d at the server (%s) (policy %d); primary SIGKILLs %d",
		r.maxClientAttempts, r.maxServerAttempts, r.maxServerCall, maxAttempts, r.primaryKills)
	t.Logf("unary attempts at the primary by outcome: %v", r.attemptOutcomes)
	retries := r.attempts - r.unaryCalls
	t.Logf("retry budget (unary target): %d retries ≤ %v + %.1f × %d refilling attempts = %.1f; lowest possible balance %.1f tokens",
		retries, budgetTokens, budgetRatio, r.deposits, budgetTokens+budgetRatio*float64(r.deposits), budgetTokens+budgetRatio*float64(r.deposits)-float64(retries))
	t.Logf("goroutines: %d before, peak %d, %d after; heap: %.1f MiB before, %.1f MiB after",
		r.goroutinesBefore, r.peakGoroutines, r.goroutinesAfter, float64(r.heapBefore)/(1<<20), float64(r.heapAfter)/(1<<20))
	t.Logf("streams committed: %d; violations: %d", r.streamCommitted.Load(), r.violationCount)
}

// check fails t for every violated invariant; with loose, a deadline
// overshoot is only reported (the soak forces full GCs to sample the heap,
// on a saturated machine).
func (r *result) check(t *testing.T, loose bool) {
	for _, v := range r.violations {
		t.Errorf("violation: %s", v)
	}
	if r.violationCount > len(r.violations) {
		t.Errorf("... and %d more violations", r.violationCount-len(r.violations))
	}
	if got, limit := r.pcts[3], maxOvershoot+r.schedLag; got > limit && !loose {
		t.Errorf("max deadline overshoot = %v; want ≤ %v + the machine's own scheduling lag %v", got, maxOvershoot, r.schedLag)
	}
	if r.maxClientAttempts > maxAttempts || r.maxServerAttempts > maxAttempts {
		t.Errorf("max attempts per call = %d (client), %d (server); want ≤ %d", r.maxClientAttempts, r.maxServerAttempts, maxAttempts)
	}
	if retries, bound := r.attempts-r.unaryCalls, budgetTokens+budgetRatio*float64(r.deposits); float64(retries) > bound {
		t.Errorf("retries = %d; want ≤ %.1f (the budget was overdrawn)", retries, bound)
	}
	if r.calls.Load() == 0 || r.streams.Load() == 0 {
		t.Errorf("calls, streams = %d, %d; want both > 0", r.calls.Load(), r.streams.Load())
	}
	const heapSlack = 16 << 20
	if r.heapAfter > r.heapBefore+heapSlack {
		t.Errorf("heap after = %d bytes; want ≤ %d (before) + %d", r.heapAfter, r.heapBefore, heapSlack)
	}
}

// schedulerLag measures, until stop, the worst lateness of a 1 ms sleep: the
// time a ready goroutine waited for a CPU on this machine.
func schedulerLag(stop <-chan struct{}) time.Duration {
	var worst time.Duration
	for {
		select {
		case <-stop:
			return worst
		default:
		}
		t0 := time.Now()
		time.Sleep(time.Millisecond)
		if lag := time.Since(t0) - time.Millisecond; lag > worst {
			worst = lag
		}
	}
}
