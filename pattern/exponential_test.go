package pattern

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// recorder collects OnStateChange calls.
type recorder struct {
	mu  sync.Mutex
	got []string
}

func (r *recorder) record(from, to State, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, from.String()+"→"+to.String()+"@"+now.Sub(t0).String())
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.got, " ")
}

// newTestBreaker returns a breaker without jitter, with 3 consecutive
// failures to open, 1s open delay up to 8s, 2 successes to close.
func newTestBreaker(t *testing.T, edit func(*ExponentialBackoffConfig)) (*ExponentialBackoff, *recorder) {
	t.Helper()
	rec := &recorder{}
	c := DefaultExponentialBackoffConfig()
	c.ConsecutiveFailures = 3
	c.FailureRateThreshold = 0
	c.MaxOpenDelay = 8 * time.Second
	c.Jitter = 0
	c.OnStateChange = rec.record
	if edit != nil {
		edit(&c)
	}
	b, err := NewExponentialBackoff(c)
	if err != nil {
		t.Fatalf("NewExponentialBackoff(%+v) = %v; want no error", c, err)
	}
	return b, rec
}

var (
	ok          = Outcome{Code: codes.OK}
	unavailable = Outcome{Code: codes.Unavailable}
	canceled    = Outcome{Code: codes.Canceled}
	notFound    = Outcome{Code: codes.NotFound}
)

func probe(o Outcome) Outcome { o.Probe = true; return o }

// report sends o to the method the interceptor would call.
func report(b *ExponentialBackoff, now time.Time, o Outcome) {
	if o.Code == codes.OK {
		b.HandleSuccess(now, o)
	} else {
		b.HandleFailure(now, o)
	}
}

// trip opens b with n failures at now.
func trip(t *testing.T, b *ExponentialBackoff, now time.Time, n int) {
	t.Helper()
	for range n {
		report(b, now, unavailable)
	}
	if got := b.State(); got != Open {
		t.Fatalf("State() after %d failures = %v; want open", n, got)
	}
}

func wantDecision(t *testing.T, b *ExponentialBackoff, now time.Time, want Decision) {
	t.Helper()
	if got := b.ShouldAttemptRecovery(now, Default); got != want {
		t.Fatalf("ShouldAttemptRecovery(t0+%v) = %+v; want %+v", now.Sub(t0), got, want)
	}
}

func TestExponentialBackoffConfigValidate(t *testing.T) {
	t.Parallel()
	if err := DefaultExponentialBackoffConfig().Validate(); err != nil {
		t.Fatalf("DefaultExponentialBackoffConfig().Validate() = %v; want nil", err)
	}
	tests := []struct {
		name  string
		edit  func(*ExponentialBackoffConfig)
		field string // "" = valid
	}{
		{"zero fields take defaults", func(c *ExponentialBackoffConfig) {
			*c = ExponentialBackoffConfig{ConsecutiveFailures: 5}
		}, ""},
		{"no trip rule", func(c *ExponentialBackoffConfig) { *c = ExponentialBackoffConfig{} }, "ConsecutiveFailures"},
		{"negative consecutive", func(c *ExponentialBackoffConfig) { c.ConsecutiveFailures = -1 }, "ConsecutiveFailures"},
		{"rate above 1", func(c *ExponentialBackoffConfig) { c.FailureRateThreshold = 1.5 }, "FailureRateThreshold"},
		{"rate NaN", func(c *ExponentialBackoffConfig) { c.FailureRateThreshold = math.NaN() }, "FailureRateThreshold"},
		{"negative slow duration", func(c *ExponentialBackoffConfig) { c.SlowCallDuration = -time.Second }, "SlowCallDuration"},
		{"slow rate negative", func(c *ExponentialBackoffConfig) { c.SlowCallRateThreshold = -0.1 }, "SlowCallRateThreshold"},
		{"window calls too big", func(c *ExponentialBackoffConfig) { c.WindowCalls = 1 << 30 }, "WindowCalls"},
		{"window duration negative", func(c *ExponentialBackoffConfig) { c.WindowDuration = -1 }, "WindowDuration"},
		{"window duration tiny", func(c *ExponentialBackoffConfig) { c.WindowDuration = time.Millisecond }, "WindowDuration"},
		{"minimum above window", func(c *ExponentialBackoffConfig) { c.WindowCalls = 10; c.MinimumCalls = 11 }, "MinimumCalls"},
		{"minimum above window, time window", func(c *ExponentialBackoffConfig) {
			c.WindowCalls = 10
			c.MinimumCalls = 11
			c.WindowDuration = time.Minute
		}, ""},
		{"negative open delay", func(c *ExponentialBackoffConfig) { c.OpenDelay = -1 }, "OpenDelay"},
		{"max below open delay", func(c *ExponentialBackoffConfig) { c.OpenDelay = time.Minute; c.MaxOpenDelay = time.Second }, "MaxOpenDelay"},
		{"open delay above default max", func(c *ExponentialBackoffConfig) { c.OpenDelay = time.Minute; c.MaxOpenDelay = 0 }, ""},
		{"multiplier below 1", func(c *ExponentialBackoffConfig) { c.Multiplier = 0.5 }, "Multiplier"},
		{"multiplier inf", func(c *ExponentialBackoffConfig) { c.Multiplier = math.Inf(1) }, "Multiplier"},
		{"jitter 1", func(c *ExponentialBackoffConfig) { c.Jitter = 1 }, "Jitter"},
		{"jitter negative", func(c *ExponentialBackoffConfig) { c.Jitter = -0.1 }, "Jitter"},
		{"negative probes", func(c *ExponentialBackoffConfig) { c.MaxProbes = -1 }, "MaxProbes"},
		{"negative success threshold", func(c *ExponentialBackoffConfig) { c.SuccessThreshold = -1 }, "SuccessThreshold"},
		{"failure codes with OK", func(c *ExponentialBackoffConfig) { c.FailureCodes = CodesOf(codes.OK, codes.Unavailable) }, "FailureCodes"},
		{"failure codes with Canceled", func(c *ExponentialBackoffConfig) { c.FailureCodes = CodesOf(codes.Canceled) }, "FailureCodes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := DefaultExponentialBackoffConfig()
			tt.edit(&c)
			err := c.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v; want nil", err)
				}
				if _, err := NewExponentialBackoff(c); err != nil {
					t.Fatalf("NewExponentialBackoff() = %v; want no error", err)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != "ExponentialBackoffConfig."+tt.field {
				t.Fatalf("Validate() = %v; want a *ConfigError for ExponentialBackoffConfig.%s", err, tt.field)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("Validate().Error() = %q; want it to name %s", err, tt.field)
			}
			if b, err2 := NewExponentialBackoff(c); b != nil || err2 == nil {
				t.Errorf("NewExponentialBackoff() = %v, %v; want nil, error", b, err2)
			}
		})
	}
}

func TestExponentialBackoffConsecutiveFailures(t *testing.T) {
	t.Parallel()
	b, rec := newTestBreaker(t, nil)
	now := t0
	report(b, now, unavailable)
	report(b, now, unavailable)
	report(b, now, ok) // resets the run
	report(b, now, unavailable)
	report(b, now, notFound) // the server answered: resets the run too
	report(b, now, unavailable)
	report(b, now, unavailable)
	report(b, now, canceled) // neutral: neither counts nor resets
	if got := b.State(); got != Closed {
		t.Fatalf("State() = %v; want closed", got)
	}
	if got := b.Snapshot(now).ConsecutiveFailures; got != 2 {
		t.Fatalf("Snapshot().ConsecutiveFailures = %d; want 2", got)
	}
	report(b, now, unavailable)
	if got := b.State(); got != Open {
		t.Fatalf("State() = %v; want open", got)
	}
	if got, want := rec.String(), "closed→open@0s"; got != want {
		t.Errorf("transitions = %q; want %q", got, want)
	}
	wantDecision(t, b, now.Add(300*time.Millisecond), Decision{RetryAfter: 700 * time.Millisecond})
}

func TestExponentialBackoffHandleFailureWithOKIsFailure(t *testing.T) {
	t.Parallel()
	b, _ := newTestBreaker(t, nil)
	for range 3 {
		b.HandleFailure(t0, Outcome{}) // Code left unset
	}
	if got := b.State(); got != Open {
		t.Fatalf("State() = %v; want open", got)
	}
}

// TestExponentialBackoffLifecycle walks every transition: closed → open →
// recovering → open (delay grows) → recovering → closed (delay and window
// reset).
func TestExponentialBackoffLifecycle(t *testing.T) {
	t.Parallel()
	b, rec := newTestBreaker(t, nil)
	trip(t, b, t0, 3)
	if got := b.OpenDelay(); got != time.Second {
		t.Fatalf("OpenDelay() = %v; want 1s", got)
	}
	wantDecision(t, b, t0.Add(999*time.Millisecond), Decision{RetryAfter: time.Millisecond})

	// At the deadline: recovering, one probe.
	now := t0.Add(time.Second)
	wantDecision(t, b, now, Decision{Allow: true, Probe: true})
	if got := b.State(); got != Recovering {
		t.Fatalf("State() = %v; want recovering", got)
	}
	wantDecision(t, b, now, Decision{RetryAfter: 100 * time.Millisecond})

	// A failed probe reopens for twice as long.
	report(b, now, probe(unavailable))
	if got := b.OpenDelay(); got != 2*time.Second {
		t.Fatalf("OpenDelay() after failed probe = %v; want 2s", got)
	}
	wantDecision(t, b, now.Add(time.Second), Decision{RetryAfter: time.Second})

	// Two successful probes close.
	now = now.Add(2 * time.Second)
	wantDecision(t, b, now, Decision{Allow: true, Probe: true})
	report(b, now, probe(ok))
	if got := b.State(); got != Recovering {
		t.Fatalf("State() after 1 successful probe = %v; want recovering", got)
	}
	wantDecision(t, b, now, Decision{Allow: true, Probe: true})
	report(b, now, probe(ok))
	if got := b.State(); got != Closed {
		t.Fatalf("State() after 2 successful probes = %v; want closed", got)
	}
	wantDecision(t, b, now, Decision{Allow: true})
	s := b.Snapshot(now)
	if s.OpenDelay != time.Second || s.WindowCalls != 0 || s.ConsecutiveFailures != 0 || s.ProbesInFlight != 0 || s.Generation != 5 {
		t.Errorf("Snapshot() after close = %+v; want OpenDelay 1s, empty window, no probes, generation 5", s)
	}
	want := "closed→open@0s open→recovering@1s recovering→open@1s open→recovering@3s recovering→closed@3s"
	if got := rec.String(); got != want {
		t.Errorf("transitions = %q; want %q", got, want)
	}
}

func TestExponentialBackoffOpenDelayGrowthAndCap(t *testing.T) {
	t.Parallel()
	b, _ := newTestBreaker(t, func(c *ExponentialBackoffConfig) { c.Multiplier = 3 })
	trip(t, b, t0, 3)
	now := t0
	var got []time.Duration
	for range 5 {
		until := b.Snapshot(now).OpenUntil
		got = append(got, until.Sub(now))
		now = until
		wantDecision(t, b, now, Decision{Allow: true, Probe: true})
		report(b, now, probe(unavailable))
	}
	want := []time.Duration{time.Second, 3 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("open delays = %v; want %v", got, want)
		}
	}
}

func TestExponentialBackoffJitterAfterCap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		r    float64
		want time.Duration // open delay once capped at 8s, ±20 %
	}{
		{"lowest", 0, 6400 * time.Millisecond},
		{"middle", 0.5, 8 * time.Second},
		{"highest", math.Nextafter(1, 0), 9600 * time.Millisecond},
		{"out of range counts as middle", 3, 8 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, _ := newTestBreaker(t, func(c *ExponentialBackoffConfig) {
				c.Jitter = 0.2
				c.Multiplier = 10
				c.Rand = func() float64 { return tt.r }
			})
			trip(t, b, t0, 3)
			now := b.Snapshot(t0).OpenUntil
			wantDecision(t, b, now, Decision{Allow: true, Probe: true})
			report(b, now, probe(unavailable)) // 1s × 10 capped at 8s, then jitter
			got := b.Snapshot(now).OpenUntil.Sub(now)
			if d := got - tt.want; d < -time.Microsecond || d > time.Microsecond {
				t.Errorf("open delay with r=%v = %v; want %v", tt.r, got, tt.want)
			}
			if b.OpenDelay() != 8*time.Second {
				t.Errorf("OpenDelay() = %v; want 8s (jitter not included)", b.OpenDelay())
			}
		})
	}
}

func TestExponentialBackoffJitterSpread(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	b, _ := newTestBreaker(t, func(c *ExponentialBackoffConfig) { c.Jitter = 0.2; c.Rand = rng.Float64 })
	lo, hi := time.Duration(math.MaxInt64), time.Duration(0)
	now := t0
	for range 200 {
		trip(t, b, now, 3)
		d := b.Snapshot(now).OpenUntil.Sub(now)
		lo, hi = min(lo, d), max(hi, d)
		now = now.Add(d)
		wantDecision(t, b, now, Decision{Allow: true, Probe: true})
		report(b, now, probe(ok))
		wantDecision(t, b, now, Decision{Allow: true, Probe: true})
		report(b, now, probe(ok))
	}
	if lo < 800*time.Millisecond || hi >= 1200*time.Millisecond || hi-lo < 300*time.Millisecond {
		t.Errorf("200 jittered open delays span [%v, %v]; want within [0.8s, 1.2s) and spread over > 0.3s", lo, hi)
	}
}

func TestExponentialBackoffProbeLimit(t *testing.T) {
	t.Parallel()
	b, _ := newTestBreaker(t, func(c *ExponentialBackoffConfig) { c.MaxProbes = 2; c.SuccessThreshold = 3 })
	trip(t, b, t0, 3)
	now := t0.Add(time.Second)
	wantDecision(t, b, now, Decision{Allow: true, Probe: true})
	wantDecision(t, b, now, Decision{Allow: true, Probe: true})
	wantDecision(t, b, now, Decision{RetryAfter: 100 * time.Millisecond})
	report(b, now, probe(ok))
	wantDecision(t, b, now, Decision{Allow: true, Probe: true})
	wantDecision(t, b, now, Decision{RetryAfter: 100 * time.Millisecond})
	// A canceled probe frees its slot and counts nothing.
	report(b, now, probe(canceled))
	if s := b.Snapshot(now); s.ProbeSuccesses != 1 || s.ProbesInFlight != 1 {
		t.Fatalf("Snapshot() after a canceled probe = %+v; want 1 success, 1 probe in flight", s)
	}
	wantDecision(t, b, now, Decision{Allow: true, Probe: true})
	report(b, now, probe(ok))
	report(b, now, probe(ok))
	if got := b.State(); got != Closed {
		t.Fatalf("State() after 3 successful probes = %v; want closed", got)
	}
}

// TestExponentialBackoffLateResults checks that outcomes of attempts admitted
// in an earlier state do not count in the current one.
func TestExponentialBackoffLateResults(t *testing.T) {
	t.Parallel()
	b, _ := newTestBreaker(t, func(c *ExponentialBackoffConfig) { c.MaxProbes = 2 })
	trip(t, b, t0, 3)

	// Attempts admitted while closed, finishing while open: ignored.
	report(b, t0.Add(500*time.Millisecond), Outcome{Code: codes.OK, Latency: time.Second})
	report(b, t0.Add(500*time.Millisecond), unavailable)
	if s := b.Snapshot(t0); s.State != Open || s.OpenUntil != t0.Add(time.Second) {
		t.Fatalf("Snapshot() after late results while open = %+v; want open until t0+1s", s)
	}

	// A non-probe success while recovering is not a probe success.
	now := t0.Add(time.Second)
	wantDecision(t, b, now, Decision{Allow: true, Probe: true})
	report(b, now, ok)
	report(b, now, ok)
	if s := b.Snapshot(now); s.State != Recovering || s.ProbeSuccesses != 0 {
		t.Fatalf("Snapshot() after non-probe successes = %+v; want recovering with 0 probe successes", s)
	}

	// An orphan probe: admitted in one recovery, reported in the next. Its
	// slot is freed but its result is not counted.
	wantDecision(t, b, now, Decision{Allow: true, Probe: true})
	report(b, now, probe(unavailable)) // reopens for 2s; the other probe is now an orphan
	now = now.Add(2 * time.Second)
	wantDecision(t, b, now, Decision{Allow: true, Probe: true})
	report(b, now, Outcome{Code: codes.DeadlineExceeded, Latency: 2500 * time.Millisecond, Probe: true})
	if s := b.Snapshot(now); s.State != Recovering || s.ProbesInFlight != 1 {
		t.Fatalf("Snapshot() after an orphan probe = %+v; want recovering with 1 probe in flight", s)
	}

	// Close, then a failure whose attempt started before the close is ignored.
	report(b, now, probe(ok))
	wantDecision(t, b, now, Decision{Allow: true, Probe: true})
	report(b, now, probe(ok))
	if got := b.State(); got != Closed {
		t.Fatalf("State() = %v; want closed", got)
	}
	later := now.Add(time.Second)
	for range 5 {
		report(b, later, Outcome{Code: codes.DeadlineExceeded, Latency: 5 * time.Second})
	}
	if s := b.Snapshot(later); s.State != Closed || s.ConsecutiveFailures != 0 || s.WindowFailures != 0 {
		t.Fatalf("Snapshot() after stale failures = %+v; want closed with nothing counted", s)
	}
	// A probe reported after the close only frees its slot.
	report(b, later, probe(unavailable))
	if s := b.Snapshot(later); s.State != Closed || s.ConsecutiveFailures != 0 {
		t.Fatalf("Snapshot() after a late probe = %+v; want closed, nothing counted", s)
	}
}

func TestExponentialBackoffLostProbeSlotIsReclaimed(t *testing.T) {
	t.Parallel()
	b, _ := newTestBreaker(t, nil) // MaxOpenDelay 8s
	trip(t, b, t0, 3)
	now := t0.Add(time.Second)
	wantDecision(t, b, now, Decision{Allow: true, Probe: true}) // never reported
	wantDecision(t, b, now.Add(7*time.Second), Decision{RetryAfter: 100 * time.Millisecond})
	wantDecision(t, b, now.Add(8*time.Second), Decision{Allow: true, Probe: true})
}

func TestExponentialBackoffFailureRate(t *testing.T) {
	t.Parallel()
	b, _ := newTestBreaker(t, func(c *ExponentialBackoffConfig) {
		c.ConsecutiveFailures = 0
		c.FailureRateThreshold = 0.5
		c.WindowCalls = 20
		c.MinimumCalls = 10
	})
	// Alternating outcomes: 50 % failures, but not before 10 calls.
	for i := range 9 {
		o := ok
		if i%2 == 0 {
			o = unavailable
		}
		report(b, t0, o)
	}
	if s := b.Snapshot(t0); s.State != Closed || s.WindowCalls != 9 || s.WindowFailures != 5 {
		t.Fatalf("Snapshot() after 9 calls = %+v; want closed, 9 calls, 5 failures", s)
	}
	report(b, t0, ok) // 10 calls, 5 failures: but only failures trip
	if got := b.State(); got != Closed {
		t.Fatalf("State() after a success = %v; want closed", got)
	}
	report(b, t0, unavailable) // 11 calls, 6 failures
	if got := b.State(); got != Open {
		t.Fatalf("State() at 6/11 failures = %v; want open", got)
	}
}

func TestExponentialBackoffCountWindowSlides(t *testing.T) {
	t.Parallel()
	b, _ := newTestBreaker(t, func(c *ExponentialBackoffConfig) {
		c.ConsecutiveFailures = 0
		c.FailureRateThreshold = 0.5
		c.WindowCalls = 10
		c.MinimumCalls = 10
	})
	for range 4 {
		report(b, t0, unavailable)
	}
	for range 10 { // pushes the 4 failures out
		report(b, t0, ok)
	}
	if s := b.Snapshot(t0); s.WindowCalls != 10 || s.WindowFailures != 0 {
		t.Fatalf("Snapshot() = %+v; want 10 calls, 0 failures", s)
	}
	for range 4 {
		report(b, t0, unavailable)
	}
	if s := b.Snapshot(t0); s.State != Closed || s.WindowFailures != 4 {
		t.Fatalf("Snapshot() = %+v; want closed with 4 failures", s)
	}
	report(b, t0, unavailable)
	if got := b.State(); got != Open {
		t.Fatalf("State() at 5/10 failures = %v; want open", got)
	}
}

func TestExponentialBackoffTimeWindowExpiry(t *testing.T) {
	t.Parallel()
	b, _ := newTestBreaker(t, func(c *ExponentialBackoffConfig) {
		c.ConsecutiveFailures = 0
		c.FailureRateThreshold = 0.5
		c.WindowDuration = 10 * time.Second
		c.MinimumCalls = 4
	})
	now := t0
	report(b, now, ok)
	report(b, now, unavailable)
	report(b, now, unavailable)
	if s := b.Snapshot(now); s.WindowCalls != 3 || s.WindowFailures != 2 {
		t.Fatalf("Snapshot() = %+v; want 3 calls, 2 failures", s)
	}
	// 10s later the first bucket has expired.
	now = now.Add(10 * time.Second)
	if s := b.Snapshot(now); s.WindowCalls != 0 {
		t.Fatalf("Snapshot(t0+10s) = %+v; want an empty window", s)
	}
	report(b, now, ok)
	report(b, now, ok)
	report(b, now, unavailable)
	if got := b.State(); got != Closed {
		t.Fatalf("State() at 1/3 failures = %v; want closed", got)
	}
	now = now.Add(5 * time.Second) // half the window later: both halves count
	report(b, now, unavailable)
	if s := b.Snapshot(now); s.State != Open || s.WindowCalls != 4 || s.WindowFailures != 2 {
		t.Fatalf("Snapshot() at 2/4 failures = %+v; want open with 4 calls, 2 failures", s)
	}
	// Samples older than their bucket are dropped, not counted.
	b2, _ := newTestBreaker(t, func(c *ExponentialBackoffConfig) { c.WindowDuration = 10 * time.Second })
	report(b2, t0.Add(20*time.Second), notFound)
	report(b2, t0, notFound) // same bucket slot, older epoch
	if s := b2.Snapshot(t0.Add(20 * time.Second)); s.WindowCalls != 1 {
		t.Fatalf("Snapshot() = %+v; want 1 call", s)
	}
}

func TestExponentialBackoffSlowCalls(t *testing.T) {
	t.Parallel()
	b, _ := newTestBreaker(t, func(c *ExponentialBackoffConfig) {
		c.ConsecutiveFailures = 0
		c.SlowCallDuration = 200 * time.Millisecond
		c.SlowCallRateThreshold = 0.5
		c.WindowCalls = 10
		c.MinimumCalls = 4
	})
	fast := Outcome{Code: codes.OK, Latency: 199 * time.Millisecond}
	slow := Outcome{Code: codes.OK, Latency: 200 * time.Millisecond}
	report(b, t0, fast)
	report(b, t0, slow)
	report(b, t0, fast)
	if s := b.Snapshot(t0); s.WindowCalls != 3 || s.WindowSlowCalls != 1 || s.State != Closed {
		t.Fatalf("Snapshot() = %+v; want closed with 3 calls, 1 slow", s)
	}
	report(b, t0, Outcome{Code: codes.NotFound, Latency: time.Second}) // slow answer: counts as slow
	if got := b.State(); got != Open {
		t.Fatalf("State() at 2/4 slow calls = %v; want open", got)
	}
	// A slow probe counts as a failed probe.
	now := t0.Add(time.Second)
	wantDecision(t, b, now, Decision{Allow: true, Probe: true})
	now = now.Add(300 * time.Millisecond) // reported when the attempt ends
	report(b, now, Outcome{Code: codes.OK, Latency: 300 * time.Millisecond, Probe: true})
	if s := b.Snapshot(now); s.State != Open || s.OpenDelay != 2*time.Second {
		t.Fatalf("Snapshot() after a slow probe = %+v; want open for 2s", s)
	}
}

func TestExponentialBackoffOnStateChangeWithoutLock(t *testing.T) {
	t.Parallel()
	var b *ExponentialBackoff
	var seen []State
	b, _ = newTestBreaker(t, func(c *ExponentialBackoffConfig) {
		c.OnStateChange = func(_, to State, now time.Time) {
			// Would deadlock if the lock were held.
			seen = append(seen, b.Snapshot(now).State, to)
		}
	})
	trip(t, b, t0, 3)
	if len(seen) != 2 || seen[0] != Open || seen[1] != Open {
		t.Fatalf("OnStateChange saw %v; want [open open]", seen)
	}
}

// TestClosedHealthyZeroAllocs asserts the hot path allocates nothing, for
// both kinds of window, and neither does rejection while open.
func TestClosedHealthyZeroAllocs(t *testing.T) {
	for _, d := range []time.Duration{0, 10 * time.Second} {
		b, _ := newTestBreaker(t, func(c *ExponentialBackoffConfig) { c.WindowDuration = d; c.FailureRateThreshold = 0.5 })
		now := t0
		n := testing.AllocsPerRun(1000, func() {
			now = now.Add(time.Millisecond)
			if !b.ShouldAttemptRecovery(now, Default).Allow {
				t.Fatal("ShouldAttemptRecovery().Allow = false; want true")
			}
			b.HandleSuccess(now, Outcome{Latency: time.Millisecond})
		})
		if n != 0 {
			t.Errorf("WindowDuration %v: AllocsPerRun(ShouldAttemptRecovery+HandleSuccess) = %v; want 0", d, n)
		}
		if n := testing.AllocsPerRun(100, func() { _ = b.Snapshot(now) }); n != 0 {
			t.Errorf("AllocsPerRun(Snapshot) = %v; want 0", n)
		}
		trip(t, b, now, 3)
		if n := testing.AllocsPerRun(100, func() { _ = b.ShouldAttemptRecovery(now, Default) }); n != 0 {
			t.Errorf("AllocsPerRun(ShouldAttemptRecovery while open) = %v; want 0", n)
		}
	}
}

// TestClosedHealthyTakesNoLock holds the breaker's mutex and checks that the
// healthy path still completes.
func TestClosedHealthyTakesNoLock(t *testing.T) {
	t.Parallel()
	for _, d := range []time.Duration{0, 10 * time.Second} {
		b, _ := newTestBreaker(t, func(c *ExponentialBackoffConfig) { c.WindowDuration = d; c.FailureRateThreshold = 0.5 })
		report(b, t0, unavailable) // a failure in the window, so successes must record
		b.mu.Lock()
		done := make(chan struct{})
		go func() {
			defer close(done)
			now := t0
			for range 1000 {
				now = now.Add(50 * time.Millisecond) // crosses time buckets
				b.ShouldAttemptRecovery(now, Default)
				b.HandleSuccess(now, ok)
			}
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("WindowDuration %v: healthy path blocked on the breaker's mutex", d)
		}
		b.mu.Unlock()
		<-done
	}
}

// TestExponentialBackoffConcurrentSafe drives one breaker from many
// goroutines with random outcomes; run it with -race.
func TestExponentialBackoffConcurrentSafe(t *testing.T) {
	t.Parallel()
	for _, d := range []time.Duration{0, time.Second} {
		var ts transitionSet
		b, _ := newTestBreaker(t, func(c *ExponentialBackoffConfig) {
			c.WindowDuration = d
			c.FailureRateThreshold = 0.5
			c.MinimumCalls = 10
			c.WindowCalls = 50
			c.MaxProbes = 3
			c.OpenDelay = 10 * time.Millisecond
			c.Jitter = 0.2
			c.OnStateChange = ts.record
		})
		driveConcurrently(t, &ts, [][2]State{{Closed, Open}, {Open, Recovering}, {Recovering, Closed}},
			func(_, _ int, rng *rand.Rand, now time.Time) {
				randomCall(t, b, rng, now, 0.3, 0.05, time.Millisecond)
			},
			func(round int, later time.Time) {
				if s := b.Snapshot(later); s.ProbesInFlight != 0 || s.ConsecutiveFailures < 0 {
					t.Errorf("WindowDuration %v: Snapshot() after round %d = %+v; want no probes in flight", d, round, s)
				}
			})
		ts.checkOnly(t, [][2]State{{Closed, Open}, {Open, Recovering}, {Recovering, Closed}, {Recovering, Open}})
	}
}

func TestZeroNowReadsTheClock(t *testing.T) {
	t.Parallel()
	cfg := DefaultExponentialBackoffConfig()
	cfg.ConsecutiveFailures = 2
	cfg.OpenDelay = time.Hour
	cfg.MaxOpenDelay = time.Hour
	cfg.Jitter = 0
	b, err := NewExponentialBackoff(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var zero time.Time
	if d := b.ShouldAttemptRecovery(zero, Default); !d.Allow {
		t.Fatalf("ShouldAttemptRecovery(zero) = %+v; want allowed while Closed", d)
	}
	b.HandleSuccess(zero, Outcome{Code: codes.OK})
	b.HandleFailure(zero, Outcome{Code: codes.Unavailable})
	b.HandleFailure(zero, Outcome{Code: codes.Unavailable})
	if b.State() != Open {
		t.Fatalf("State() = %v; want open after 2 failures reported with a zero now", b.State())
	}
	d := b.ShouldAttemptRecovery(zero, Default)
	if d.Allow || d.RetryAfter < 59*time.Minute || d.RetryAfter > time.Hour {
		t.Errorf("ShouldAttemptRecovery(zero) = %+v; want refused for about an hour (the real clock, not year 1)", d)
	}
}
