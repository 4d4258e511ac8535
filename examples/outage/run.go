package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	catalogv1 "github.com/rebound-grpc/rebound/examples/outage/proto/catalog/v1"
	"github.com/rebound-grpc/rebound/fallback"
	"github.com/rebound-grpc/rebound/interceptor"
	reboundv1 "github.com/rebound-grpc/rebound/proto/rebound/v1"
)

// Config is one run of the demo.
type Config struct {
	// Pattern is the recovery pattern of GetItem: "backoff" (the
	// exponential_backoff of catalog.proto), "partial" or "adaptive".
	Pattern string
	// Schedule is what the primary does, phase by phase; its total is the
	// length of the load.
	Schedule Schedule
	// Rate is the calls per second of the open-loop load.
	Rate float64
	// Keys is the number of items asked for, Zipf-distributed (a few are
	// asked for often: the cache has hits).
	Keys int
	// Hot is the number of best sellers the replica holds.
	Hot int
	// CallTimeout is the caller's deadline for each call.
	CallTimeout time.Duration
	// MaxInFlight bounds the calls in flight; calls beyond it are shed.
	MaxInFlight int
	// Rows receives a row per second and the pattern's transitions; nil: none.
	Rows io.Writer
	// Log, when not nil, receives rebound's own log lines (zap, console).
	Log io.Writer
	// Seed seeds the choice of items.
	Seed uint64
}

// DefaultConfig is the run of `go run ./examples/outage`.
func DefaultConfig() Config {
	sched, err := ParseSchedule(DefaultSchedule)
	if err != nil {
		panic(err)
	}
	return Config{
		Pattern:     "backoff",
		Schedule:    sched,
		Rate:        100,
		Keys:        200,
		Hot:         25,
		CallTimeout: time.Second,
		Seed:        1,
	}
}

// Limits of a run, so that nothing is unbounded.
const (
	maxRate     = 5000
	maxDuration = time.Hour
	maxKeys     = 1_000_000
)

func (c *Config) validate() error {
	var errs []error
	if _, err := patternPolicy(c.Pattern); err != nil {
		errs = append(errs, err)
	}
	if len(c.Schedule) == 0 {
		errs = append(errs, errors.New("empty schedule"))
	} else if t := c.Schedule.Total(); t > maxDuration {
		errs = append(errs, fmt.Errorf("schedule of %v: at most %v", t, maxDuration))
	}
	if !(c.Rate > 0 && c.Rate <= maxRate) {
		errs = append(errs, fmt.Errorf("rate %g: want 0 < rate <= %d calls/s", c.Rate, maxRate))
	}
	if c.Keys < 1 || c.Keys > maxKeys {
		errs = append(errs, fmt.Errorf("keys %d: want 1..%d", c.Keys, maxKeys))
	}
	if c.Hot < 0 {
		errs = append(errs, fmt.Errorf("hot %d: want >= 0", c.Hot))
	}
	if c.CallTimeout <= 0 {
		errs = append(errs, fmt.Errorf("call timeout %v: want > 0", c.CallTimeout))
	}
	if c.MaxInFlight == 0 {
		// Twice the calls of one caller deadline: only a stuck client sheds.
		c.MaxInFlight = min(max(64, int(2*c.Rate*c.CallTimeout.Seconds())), 20_000)
	}
	return errors.Join(errs...)
}

// getItem is the full method whose policy the demo shows.
const getItem = catalogv1.CatalogService_GetItem_FullMethodName

// protoPolicy returns GetItem's policy as catalog.proto declares it.
func protoPolicy() *reboundv1.RecoveryPolicy {
	md := catalogv1.File_catalog_v1_catalog_proto.Services().ByName("CatalogService").Methods().ByName("GetItem")
	return proto.GetExtension(md.Options(), reboundv1.E_MethodPolicy).(*reboundv1.RecoveryPolicy)
}

// patternPolicy returns the Go override that selects the -pattern, or nil
// for "backoff": catalog.proto's own exponential_backoff. An override sets
// only the policy's pattern oneof; retries and fallbacks stay the proto's.
func patternPolicy(name string) (*reboundv1.RecoveryPolicy, error) {
	switch name {
	case "backoff":
		return nil, nil
	case "partial":
		// The proto's breaker decides when to open; then the ramp reopens
		// 10 %, 25 %, 50 % and 100 % of the calls, a step per healthy second.
		return &reboundv1.RecoveryPolicy{Pattern: &reboundv1.RecoveryPolicy_PartialRecovery{
			PartialRecovery: &reboundv1.PartialRecovery{
				Breaker:      protoPolicy().GetExponentialBackoff(),
				RampPercent:  []float64{10, 25, 50, 100},
				StepWindowMs: proto.Uint32(1000),
			},
		}}, nil
	case "adaptive":
		// SRE client-side throttling over a window short enough for a demo.
		return &reboundv1.RecoveryPolicy{Pattern: &reboundv1.RecoveryPolicy_AdaptiveRecovery{
			AdaptiveRecovery: &reboundv1.AdaptiveRecovery{
				K:               proto.Float64(2),
				WindowMs:        proto.Uint32(5000),
				MinAdmitPercent: proto.Float64(5),
			},
		}}, nil
	}
	return nil, fmt.Errorf("pattern %q: want backoff, partial or adaptive", name)
}

// telemetryOptions exports the demo's traces over OTLP/gRPC when
// OTEL_EXPORTER_OTLP_ENDPOINT is set (e.g. http://127.0.0.1:4317, a Jaeger
// v2 or any OpenTelemetry collector; the exporter reads the OTEL_EXPORTER_OTLP_*
// variables itself). Metrics stay in process: Jaeger accepts traces only. The
// returned shutdown flushes the spans before run returns.
func telemetryOptions(ctx context.Context, w io.Writer) (opts []interceptor.Option, shutdown func(context.Context) error, err error) {
	noop := func(context.Context) error { return nil }
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return nil, noop, nil
	}
	exp, err := otlptracegrpc.New(ctx)
	if err != nil {
		return nil, noop, fmt.Errorf("OTLP exporter: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "rebound-outage-demo"))))
	if w != nil {
		fmt.Fprintln(w, "exporting traces over OTLP (service rebound-outage-demo)")
	}
	return []interceptor.Option{interceptor.WithTracerProvider(tp)}, tp.Shutdown, nil
}

// run runs the demo: the two servers, the Suite and the load, for the length
// of cfg.Schedule, and returns what the caller saw. Everything it starts is
// stopped before it returns. Cancelling ctx ends the load early.
func run(ctx context.Context, cfg Config) (Summary, error) {
	if err := cfg.validate(); err != nil {
		return Summary{}, err
	}
	override, _ := patternPolicy(cfg.Pattern)
	rec := newRecorder(cfg.Schedule)

	pSrv, pAddr, err := serve(&primary{sched: cfg.Schedule, rec: rec})
	if err != nil {
		return Summary{}, fmt.Errorf("primary server: %w", err)
	}
	defer pSrv.Stop()
	rSrv, rAddr, err := serve(&replica{hot: cfg.Hot})
	if err != nil {
		return Summary{}, fmt.Errorf("replica server: %w", err)
	}
	defer rSrv.Stop()

	// The alternate is a plain connection: rebound calls it from the fallback
	// chain, guarded by a breaker of its own.
	replicaConn, err := grpc.NewClient(rAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return Summary{}, err
	}
	defer replicaConn.Close()

	opts := []interceptor.Option{
		interceptor.WithAlternate("replica", replicaConn),
		interceptor.WithCache(fallback.NewMemoryCache(16 << 20)),
		interceptor.WithLogger(newLogger(cfg.Log)),
		interceptor.WithStateChange(onStateChange(rec)),
	}
	if override != nil {
		opts = append(opts, interceptor.WithPolicy(getItem, override))
	}
	telemetry, shutdown, err := telemetryOptions(ctx, cfg.Rows)
	if err != nil {
		return Summary{}, err
	}
	defer func() { _ = shutdown(context.Background()) }()
	opts = append(opts, telemetry...)
	suite, err := interceptor.New(opts...)
	if err != nil {
		return Summary{}, fmt.Errorf("-pattern %s: %w", cfg.Pattern, err)
	}
	defer suite.Close()

	conn, err := grpc.NewClient(pAddr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDisableRetry(), // rebound retries; grpc's own retries would multiply them
		grpc.WithChainUnaryInterceptor(suite.UnaryClientInterceptor()),
	)
	if err != nil {
		return Summary{}, err
	}
	defer conn.Close()
	for _, c := range []*grpc.ClientConn{conn, replicaConn} {
		if err := waitReady(ctx, c); err != nil {
			return Summary{}, err
		}
	}
	client := catalogv1.NewCatalogServiceClient(conn)

	rows := newRowPrinter(cfg, pAddr, rAddr)
	start := rec.begin()
	repDone := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(repDone)
		rows.loop(rec, loadDone)
	}()

	var wg sync.WaitGroup
	generate(ctx, cfg, start, rec, client, &wg)
	wg.Wait()
	close(loadDone)
	<-repDone
	sum := rec.summary(cfg)
	if ctx.Err() != nil {
		sum.Interrupted = true
	}
	return sum, nil
}

// waitReady connects c, for at most 5 s.
func waitReady(ctx context.Context, c *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c.Connect()
	for s := c.GetState(); s != connectivity.Ready; s = c.GetState() {
		if !c.WaitForStateChange(ctx, s) {
			return fmt.Errorf("connecting to %s: %w (state %v)", c.Target(), ctx.Err(), s)
		}
	}
	return nil
}

// generate is the open-loop load: call i starts at start + i/rate whether
// or not the earlier calls have returned, as real users would. At most
// cfg.MaxInFlight calls are in flight; a call beyond that is shed.
func generate(ctx context.Context, cfg Config, start time.Time, rec *recorder, client catalogv1.CatalogServiceClient, wg *sync.WaitGroup) {
	total := cfg.Schedule.Total()
	rnd := rand.New(rand.NewPCG(cfg.Seed, 0x0a7a6e))
	var zipf *rand.Zipf
	if cfg.Keys > 1 {
		zipf = rand.NewZipf(rnd, 1.1, 1, uint64(cfg.Keys-1))
	}
	sem := make(chan struct{}, cfg.MaxInFlight)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for i := 0; ; i++ {
		at := time.Duration(float64(i) * float64(time.Second) / cfg.Rate)
		if at >= total {
			return
		}
		if wait := time.Until(start.Add(at)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
		} else if ctx.Err() != nil {
			return
		}
		var n int
		if zipf != nil {
			n = int(zipf.Uint64())
		}
		select {
		case sem <- struct{}{}:
		default:
			rec.shed()
			continue
		}
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			defer func() { <-sem }()
			// A call started runs to its end (its deadline bounds it), even
			// when ctx ends the load: the summary counts whole calls.
			call(context.WithoutCancel(ctx), cfg.CallTimeout, rec, client, id)
		}(itemID(n))
	}
}

// call makes one call and records how it was answered.
func call(ctx context.Context, timeout time.Duration, rec *recorder, client catalogv1.CatalogServiceClient, id string) {
	m := rec.begin1()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var served interceptor.Served
	t0 := time.Now()
	resp, err := client.GetItem(ctx, &catalogv1.GetItemRequest{Id: id}, interceptor.ServedBy(&served))
	lat := time.Since(t0)
	o := outcome{Calls: 1}
	if served.Attempts > 0 {
		o.Admitted = 1
	}
	switch {
	case err != nil:
		o.Failed = 1
	case served.Source == fallback.SourcePrimary && served.Attempts > 1:
		o.Retried = 1
	case served.Source == fallback.SourcePrimary:
		o.Primary = 1
	case served.Source == fallback.SourceAlternate:
		o.Alternate = 1
	case served.Source == fallback.SourceCache:
		o.Cache = 1
	default: // static reply (the policy has no function step)
		o.Static = 1
	}
	// A fallback must fill the caller's reply, not just return nil.
	rec.done(m, o, lat, err == nil && resp.GetItem() == nil)
}

// newLogger returns the Suite's logger: every line to w, or nothing when w
// is nil.
func newLogger(w io.Writer) *zap.Logger {
	if w == nil {
		return zap.NewNop()
	}
	enc := zap.NewDevelopmentEncoderConfig()
	enc.TimeKey = ""
	return zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(w), zapcore.DebugLevel))
}

// onStateChange feeds the primary's pattern transitions for GetItem to rec
// (the replica's own breaker and other methods are left out).
func onStateChange(rec *recorder) func(interceptor.StateChange) {
	return func(c interceptor.StateChange) {
		if c.Alternate == "" && c.Method == getItem {
			rec.transition(c.From.String(), c.To.String())
		}
	}
}
