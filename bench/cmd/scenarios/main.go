// Command scenarios runs the failure-path scenarios against every library:
// an open-loop client calls a loopback server at a fixed rate while the
// server fails in one of four ways, and the program records, per library,
// the attempts that reached the server per call, the share of calls that
// succeeded, their latency and, when the server heals, how long the library
// took to send calls back to it successfully.
//
//	go run ./cmd/scenarios -rounds 3 -out scenarios.jsonl
//
// Scenarios:
//
//	outage    the server answers every attempt UNAVAILABLE
//	heal      UNAVAILABLE for the first half (plus a per-round offset of 0–1 s),
//	          healthy after that
//	random30  30 % of attempts fail UNAVAILABLE at random
//	brownout  half the attempts take 300 ms; calls have a 250 ms deadline; every
//	          library with the options gets a 70 ms per-attempt timeout and a
//	          10 ms first backoff, so that 3 attempts fit in the deadline
//
// Every run is bounded: rate × duration calls, each with a deadline, and the
// program gives up waiting for stragglers after the deadline plus 10 s.
// Only 127.0.0.1 is used.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/rebound-grpc/rebound/bench/internal/harness"
)

// Result is one (round, scenario, library) run; one JSON line each.
type Result struct {
	Round    int    `json:"round"`
	Scenario string `json:"scenario"`
	Lib      string `json:"lib"`

	Calls      int     `json:"calls"`
	OK         int     `json:"ok"`
	Unfinished int     `json:"unfinished"` // calls still running when the program stopped waiting
	Attempts   int64   `json:"attempts"`
	PerCall    float64 `json:"attempts_per_call"`
	OKPct      float64 `json:"ok_pct"`
	P50Ms      float64 `json:"p50_ms"`
	P99Ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
	DeadlineMs float64 `json:"deadline_ms"`
	Overdue    int     `json:"overdue"` // calls that returned more than 20 ms after their deadline
	// LagMs is how late the open-loop sender started its most delayed
	// call: more than a few ms means the machine stalled the process and
	// the run's latencies and outcomes are disturbed.
	LagMs float64 `json:"lag_ms"`

	// Phase A and B split the calls by their start: outage: the first
	// second vs the rest (steady state, once any breaker is open); heal:
	// before vs after healing; others: first vs second half. Attempts are
	// attributed to their call by a metadata key the server reads.
	PerCallA float64 `json:"attempts_per_call_a"`
	PerCallB float64 `json:"attempts_per_call_b"`
	OKPctB   float64 `json:"ok_pct_b"`
	// RecoveryMs (heal only): time from healing to the start of the last
	// call that still failed; 0 if none did; -1 if calls were still failing
	// at the end of the run.
	RecoveryMs *float64 `json:"recovery_ms,omitempty"`
}

type scenario struct {
	name     string
	behavior harness.Behavior
	deadline time.Duration
	heal     bool    // switch to OK half way
	split    float64 // fraction of the duration where phase B starts (0: halfway)
	long     bool    // uses the long duration
	// brownout: every library with the option gets a per-attempt timeout
	// short enough for 3 attempts within the deadline, and a short first backoff.
	perAttempt, initial time.Duration
}

func scenarios() []scenario {
	return []scenario{
		{name: "outage", behavior: harness.Unavailable, deadline: time.Second},
		{name: "heal", behavior: harness.Unavailable, deadline: time.Second, heal: true, long: true},
		{name: "random30", behavior: harness.FailRandom(0.3), deadline: time.Second},
		{name: "brownout", behavior: harness.Brownout(0.5, 300*time.Millisecond), deadline: 250 * time.Millisecond,
			perAttempt: 70 * time.Millisecond, initial: 10 * time.Millisecond},
	}
}

type call struct {
	start time.Time
	lat   time.Duration
	ok    bool
	done  bool
}

func main() {
	var (
		rounds     = flag.Int("rounds", 3, "rounds; each runs every scenario for every library, libraries in a rotated order")
		firstRound = flag.Int("first-round", 0, "index of the first round (run.sh runs one round at a time, interleaved with the benchmarks)")
		rate       = flag.Int("rate", 200, "calls per second (open loop)")
		dur        = flag.Duration("dur", 3*time.Second, "duration of the outage, random30 and brownout runs")
		longDur    = flag.Duration("heal-dur", 10*time.Second, "duration of the heal run (heals half way, plus a per-round offset of 0-1 s)")
		outageWarm = flag.Duration("outage-phase", time.Second, "outage: phase B (steady state) starts after this")
		perAttempt = flag.Duration("per-attempt-timeout", 100*time.Millisecond, "per-attempt timeout for the libraries that have one")
		out        = flag.String("out", "", "append JSON lines here (default stdout)")
		libsFlag   = flag.String("libs", "", "comma-separated library IDs (default: all scenario libraries)")
		scnFlag    = flag.String("scenarios", "", "comma-separated scenarios (default: all)")
	)
	flag.Parse()
	if *rate <= 0 || *rate > 2000 || *rounds <= 0 || *rounds > 50 || *firstRound < 0 || *dur <= 0 || *dur > time.Minute || *longDur <= 0 || *longDur > 2*time.Minute {
		log.Fatal("scenarios: flags out of bounds (rate 1..2000, rounds 1..50, dur ≤ 1m, heal-dur ≤ 2m)")
	}
	w := os.Stdout
	if *out != "" {
		f, err := os.OpenFile(*out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		w = f
	}
	enc := json.NewEncoder(w)

	var libs []harness.Lib
	for _, l := range harness.Libs() {
		if l.Scenario && selected(*libsFlag, l.ID) {
			libs = append(libs, l)
		}
	}
	settings := harness.Settings{PerAttemptTimeout: *perAttempt}
	for r := *firstRound; r < *firstRound+*rounds; r++ {
		for _, sc := range scenarios() {
			if !selected(*scnFlag, sc.name) {
				continue
			}
			for i := range libs {
				lib := libs[(i+r)%len(libs)]
				d := *dur
				if sc.long {
					d = *longDur
				}
				st := settings
				if sc.perAttempt > 0 {
					st.PerAttemptTimeout, st.InitialBackoff = sc.perAttempt, sc.initial
				}
				res, err := run(sc, lib, st, *rate, d, *outageWarm, healOffset(r))
				if err != nil {
					log.Fatalf("%s/%s: %v", sc.name, lib.ID, err)
				}
				res.Round = r
				if err := enc.Encode(res); err != nil {
					log.Fatal(err)
				}
				fmt.Fprintf(os.Stderr, "round %d %-9s %-20s %5.3f att/call  %5.1f%% ok  p50 %6.1fms p99 %6.1fms  A %5.3f B %5.3f  overdue %d  lag %.1fms\n",
					r, sc.name, lib.ID, res.PerCall, res.OKPct, res.P50Ms, res.P99Ms, res.PerCallA, res.PerCallB, res.Overdue, res.LagMs)
			}
		}
	}
}

func selected(list, name string) bool {
	return list == "" || slices.Contains(strings.Split(list, ","), name)
}

// healOffset is how long after half its duration the heal run of round r
// heals: the fractional parts of r × the golden ratio (0, 0.62, 0.24, 0.85,
// 0.47 s, ...), the same for every library in a round. A breaker with a
// fixed open delay probes at fixed phases after it opened; healing at
// exactly half the run would put the heal at the same phase every round
// (just before a probe, for a 1 s delay), and its recovery time would
// measure that coincidence rather than the breaker.
func healOffset(round int) time.Duration {
	_, frac := math.Modf(float64(round) * 0.6180339887)
	return time.Duration(frac * float64(time.Second))
}

func run(sc scenario, lib harness.Lib, settings harness.Settings, rate int, dur, outagePhase, healOffset time.Duration) (Result, error) {
	srv, err := harness.StartTCP()
	if err != nil {
		return Result{}, err
	}
	defer srv.Stop()
	c, err := lib.New(settings)
	if err != nil {
		return Result{}, err
	}
	defer c.Close()
	cc, err := c.Dial(srv)
	if err != nil {
		return Result{}, err
	}
	defer cc.Close()

	// Warm up on a healthy server: connected, and every library has seen successes.
	for range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := cc.Invoke(ctx, harness.FullMethod, &emptypb.Empty{}, new(emptypb.Empty))
		cancel()
		if err != nil {
			return Result{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	interval := time.Second / time.Duration(rate)
	n := int(dur / interval)
	srv.Reset()
	srv.TrackCalls(n)
	srv.SetBehavior(sc.behavior)
	calls := make([]call, n)
	healIndex := n/2 + int(healOffset/interval)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		healAt time.Time
		lag    time.Duration
	)
	begin := time.Now()
	for i := range n {
		at := begin.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(at))
		lag = max(lag, time.Since(at))
		if sc.heal && i == healIndex {
			srv.SetBehavior(harness.OK)
			healAt = time.Now()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), sc.deadline)
			ctx = metadata.AppendToOutgoingContext(ctx, harness.CallIDKey, strconv.Itoa(i))
			err := cc.Invoke(ctx, harness.FullMethod, &emptypb.Empty{}, new(emptypb.Empty))
			cancel()
			lat := time.Since(start)
			mu.Lock()
			calls[i] = call{start: start, lat: lat, ok: err == nil, done: true}
			mu.Unlock()
		}()
	}
	sentEnd := time.Now()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(sc.deadline + 10*time.Second):
	}
	mu.Lock()
	defer mu.Unlock()

	res := Result{Scenario: sc.name, Lib: lib.ID, Calls: n, DeadlineMs: ms(sc.deadline), LagMs: ms(lag)}
	res.Attempts = srv.Attempts()
	res.PerCall = float64(res.Attempts) / float64(n)
	var lats []time.Duration
	for _, c := range calls {
		if !c.done {
			res.Unfinished++
			continue
		}
		lats = append(lats, c.lat)
		if c.ok {
			res.OK++
		}
		if c.lat > sc.deadline+20*time.Millisecond {
			res.Overdue++
		}
	}
	res.OKPct = 100 * float64(res.OK) / float64(n)
	slices.Sort(lats)
	res.P50Ms, res.P99Ms = ms(quantile(lats, 0.50)), ms(quantile(lats, 0.99))
	if len(lats) > 0 {
		res.MaxMs = ms(lats[len(lats)-1])
	}

	// Phases.
	var split time.Time
	switch {
	case sc.heal:
		split = healAt
	case sc.name == "outage":
		split = begin.Add(outagePhase)
	default:
		split = begin.Add(dur / 2)
	}
	var attA, attB, callsA, callsB, okB int
	for i, c := range calls {
		if c.start.Before(split) {
			callsA++
			attA += srv.CallAttempts(i)
		} else {
			callsB++
			attB += srv.CallAttempts(i)
			if c.ok {
				okB++
			}
		}
	}
	res.PerCallA = ratio(attA, callsA)
	res.PerCallB = ratio(attB, callsB)
	res.OKPctB = 100 * ratio(okB, callsB)
	if sc.heal {
		var last time.Time
		for _, c := range calls {
			if c.done && !c.ok && !c.start.Before(healAt) && c.start.After(last) {
				last = c.start
			}
		}
		var rec float64
		switch {
		case last.IsZero():
			rec = 0
		case sentEnd.Sub(last) < 5*interval:
			rec = -1
		default:
			rec = ms(last.Sub(healAt) + interval)
		}
		res.RecoveryMs = &rec
	}
	if res.Unfinished > 0 {
		return res, errors.New("calls outlived their deadline by 10 s")
	}
	return res, nil
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
