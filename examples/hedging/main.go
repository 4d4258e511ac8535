package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	catalogv1 "github.com/rebound-grpc/rebound/examples/outage/proto/catalog/v1"
	"github.com/rebound-grpc/rebound/interceptor"
	reboundv1 "github.com/rebound-grpc/rebound/proto/rebound/v1"
)

const getItem = "/catalog.v1.CatalogService/GetItem"

// Config is one measurement's settings.
type Config struct {
	Duration  time.Duration // per run
	Rate      int           // calls per second
	SlowShare float64       // share of attempts that are slow
	Slow      time.Duration // latency of a slow attempt
	Fast      time.Duration // latency of the others
	Seed      uint64
}

// Result is one run's figures.
type Result struct {
	Name            string  `json:"name"`
	Calls           int     `json:"calls"`
	Failed          int     `json:"failed"`
	P50ms           float64 `json:"p50_ms"`
	P99ms           float64 `json:"p99_ms"`
	P999ms          float64 `json:"p999_ms"`
	AttemptsPerCall float64 `json:"attempts_per_call"`
}

// Report is the runs and the ratios of the two-attempt hedging run.
type Report struct {
	Without      Result  `json:"without_hedging"`
	With         Result  `json:"with_hedging"`   // max_attempts 2
	With3        Result  `json:"with_hedging_3"` // max_attempts 3
	P99Ratio     float64 `json:"p99_ratio"`      // without ÷ with
	ExtraPercent float64 `json:"extra_attempts"` // % more attempts with hedging
}

// server answers GetItem slowly for a share of attempts, and counts them.
type server struct {
	catalogv1.UnimplementedCatalogServiceServer
	cfg      Config
	mu       sync.Mutex
	rng      *rand.Rand
	attempts atomic.Int64
}

func (s *server) GetItem(ctx context.Context, req *catalogv1.GetItemRequest) (*catalogv1.GetItemResponse, error) {
	s.attempts.Add(1)
	s.mu.Lock()
	slow := s.rng.Float64() < s.cfg.SlowShare
	s.mu.Unlock()
	d := s.cfg.Fast
	if slow {
		d = s.cfg.Slow
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &catalogv1.GetItemResponse{Item: &catalogv1.Item{Id: req.GetId(), Name: "item " + req.GetId()}}, nil
}

// measure runs one open-loop run against a fresh server.
func measure(ctx context.Context, cfg Config, name string, pol *reboundv1.RecoveryPolicy) (Result, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return Result{}, err
	}
	srv := &server{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 42))}
	gs := grpc.NewServer()
	catalogv1.RegisterCatalogServiceServer(gs, srv)
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()

	suite, err := interceptor.New(interceptor.WithPolicy(getItem, pol))
	if err != nil {
		return Result{}, err
	}
	defer suite.Close()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDisableRetry(), grpc.WithChainUnaryInterceptor(suite.UnaryClientInterceptor()))
	if err != nil {
		return Result{}, err
	}
	defer cc.Close()
	client := catalogv1.NewCatalogServiceClient(cc)

	// Warm up the connection (and the hedging percentile) outside the measurement.
	for i := range 50 {
		_, _ = client.GetItem(ctx, &catalogv1.GetItemRequest{Id: fmt.Sprint(i)})
	}
	srv.attempts.Store(0)

	n := int(cfg.Duration.Seconds() * float64(cfg.Rate))
	lat := make([]time.Duration, n)
	var failed atomic.Int64
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(cfg.Rate))
	defer tick.Stop()
	for i := 0; i < n; i++ {
		select {
		case <-ctx.Done():
			return Result{}, ctx.Err()
		case <-tick.C:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			start := time.Now()
			if _, err := client.GetItem(cctx, &catalogv1.GetItemRequest{Id: fmt.Sprint(i % 100)}); err != nil {
				failed.Add(1)
			}
			lat[i] = time.Since(start)
		}()
	}
	wg.Wait()
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	q := func(p float64) float64 {
		i := min(int(p*float64(len(lat))), len(lat)-1)
		return float64(lat[i].Microseconds()) / 1000
	}
	return Result{
		Name: name, Calls: n, Failed: int(failed.Load()),
		P50ms: q(0.50), P99ms: q(0.99), P999ms: q(0.999),
		AttemptsPerCall: float64(srv.attempts.Load()) / float64(n),
	}, nil
}

// run measures without and with hedging.
func run(ctx context.Context, cfg Config) (Report, error) {
	plain := &reboundv1.RecoveryPolicy{
		Retry:    &reboundv1.Retry{MaxAttempts: proto.Uint32(1), PerAttemptTimeoutMs: proto.Uint32(0)}, // no per-attempt timeout (catalog.proto sets one)
		Pattern:  &reboundv1.RecoveryPolicy_NoPattern{NoPattern: &reboundv1.NoPattern{}},
		Fallback: &reboundv1.Fallback{Disabled: proto.Bool(true)},
	}
	hedged := func(attempts uint32) *reboundv1.RecoveryPolicy {
		p := proto.Clone(plain).(*reboundv1.RecoveryPolicy)
		p.Hedging = &reboundv1.Hedging{MaxAttempts: proto.Uint32(attempts), DelayMs: proto.Uint32(20), DelayPercentile: proto.Float64(95)}
		return p
	}
	without, err := measure(ctx, cfg, "without hedging", plain)
	if err != nil {
		return Report{}, err
	}
	with, err := measure(ctx, cfg, "hedging ×2 at p95", hedged(2))
	if err != nil {
		return Report{}, err
	}
	with3, err := measure(ctx, cfg, "hedging ×3 at p95", hedged(3))
	if err != nil {
		return Report{}, err
	}
	r := Report{Without: without, With: with, With3: with3}
	if with.P99ms > 0 {
		r.P99Ratio = without.P99ms / with.P99ms
	}
	if without.AttemptsPerCall > 0 {
		r.ExtraPercent = 100 * (with.AttemptsPerCall/without.AttemptsPerCall - 1)
	}
	return r, nil
}

func main() {
	cfg := Config{SlowShare: 0.05, Slow: 200 * time.Millisecond, Fast: time.Millisecond, Seed: 1}
	flag.DurationVar(&cfg.Duration, "duration", 15*time.Second, "length of each run")
	flag.IntVar(&cfg.Rate, "rate", 200, "calls per second (open loop)")
	asJSON := flag.Bool("json", false, "print the report as JSON")
	flag.Parse()
	if cfg.Duration <= 0 || cfg.Rate <= 0 || cfg.Rate > 5000 {
		fmt.Fprintln(os.Stderr, "hedging: -duration must be > 0 and -rate in (0, 5000]")
		os.Exit(2)
	}
	r, err := run(context.Background(), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hedging:", err)
		os.Exit(1)
	}
	if *asJSON {
		_ = json.NewEncoder(os.Stdout).Encode(r)
		return
	}
	fmt.Printf("%d calls/s for %v per run; %.0f %% of attempts take %v, the rest %v\n\n", cfg.Rate, cfg.Duration, 100*cfg.SlowShare, cfg.Slow, cfg.Fast)
	fmt.Printf("%-18s %8s %8s %9s %10s %8s\n", "", "p50", "p99", "p99.9", "attempts", "failed")
	for _, x := range []Result{r.Without, r.With, r.With3} {
		fmt.Printf("%-18s %6.1fms %6.1fms %7.1fms %9.3fx %8d\n", x.Name, x.P50ms, x.P99ms, x.P999ms, x.AttemptsPerCall, x.Failed)
	}
	fmt.Printf("\np99 %.1fx lower with two-attempt hedging, for %+.1f %% attempts\n", r.P99Ratio, r.ExtraPercent)
}
