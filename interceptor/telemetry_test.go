package interceptor_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/rebound-grpc/rebound/interceptor"
	"github.com/rebound-grpc/rebound/internal/testpb"
	"github.com/rebound-grpc/rebound/internal/testserver"
	reboundv1 "github.com/rebound-grpc/rebound/proto/rebound/v1"
)

type telemetryHarness struct {
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
}

func newTelemetryHarness(t *testing.T) *telemetryHarness {
	t.Helper()
	h := &telemetryHarness{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	h.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(h.spans))
	h.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader))
	t.Cleanup(func() {
		_ = h.tp.Shutdown(context.Background())
		_ = h.mp.Shutdown(context.Background())
	})
	return h
}

func (h *telemetryHarness) options() []interceptor.Option {
	return []interceptor.Option{interceptor.WithTracerProvider(h.tp), interceptor.WithMeterProvider(h.mp)}
}

// spansNamed returns rebound's ended spans called name.
func (h *telemetryHarness) spansNamed(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range h.spans.Ended() {
		if s.Name() == name && s.InstrumentationScope().Name == interceptor.ScopeName {
			out = append(out, s)
		}
	}
	return out
}

func attr(s sdktrace.ReadOnlySpan, key string) attribute.Value {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// sum adds the data points of the counter name whose attributes include want.
func (h *telemetryHarness) sum(t *testing.T, name string, want ...attribute.KeyValue) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					if hasAll(dp.Attributes, want) {
						total += dp.Value
					}
				}
			case metricdata.Histogram[int64]:
				for _, dp := range d.DataPoints {
					if hasAll(dp.Attributes, want) {
						total += dp.Sum
					}
				}
			case metricdata.Gauge[int64]:
				for _, dp := range d.DataPoints {
					if hasAll(dp.Attributes, want) {
						total += dp.Value
					}
				}
			}
		}
	}
	return total
}

func hasAll(set attribute.Set, want []attribute.KeyValue) bool {
	for _, kv := range want {
		if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}

const echoSpan = "rebound.testing.v1.EchoService/Echo"

func TestTelemetryHealthyCall(t *testing.T) {
	h := newTelemetryHarness(t)
	srv := testserver.Start(t, "primary", testserver.OK)
	cc := dial(t, srv.Addr, newSuite(t, h.options()...))
	if _, err := echo(t, cc, ctxTimeout(t, 5*time.Second), "x"); err != nil {
		t.Fatal(err)
	}
	calls := h.spansNamed(echoSpan)
	attempts := h.spansNamed("Attempt." + echoSpan)
	if len(calls) != 1 || len(attempts) != 1 {
		t.Fatalf("spans = %d call, %d attempt; want 1 and 1", len(calls), len(attempts))
	}
	call := calls[0]
	if call.SpanKind() != trace.SpanKindClient {
		t.Errorf("call span kind = %v; want client", call.SpanKind())
	}
	for key, want := range map[string]string{
		"rpc.system.name": "grpc", "rpc.method": echoSpan, "rpc.response.status_code": "OK",
		"server.address": srv.Addr, "rebound.served_by": "primary",
	} {
		if got := attr(call, key).AsString(); got != want {
			t.Errorf("call span %s = %q; want %q", key, got, want)
		}
	}
	if attempts[0].Parent().SpanID() != call.SpanContext().SpanID() {
		t.Errorf("attempt span's parent = %v; want the call span", attempts[0].Parent().SpanID())
	}
	if got := h.sum(t, "rebound.client.calls", attribute.String("rebound.served_by", "primary")); got != 1 {
		t.Errorf("rebound.client.calls{primary} = %d; want 1", got)
	}
	if got := h.sum(t, "rebound.client.attempts", attribute.String("rpc.response.status_code", "OK")); got != 1 {
		t.Errorf("rebound.client.attempts{OK} = %d; want 1", got)
	}
	if got := h.sum(t, "grpc.client.call.retries"); got != 0 {
		t.Errorf("grpc.client.call.retries = %d; want nothing recorded for a call without retries", got)
	}
}

func TestTelemetryRetriedCall(t *testing.T) {
	h := newTelemetryHarness(t)
	srv := testserver.Start(t, "primary", testserver.FailFirst(2, codes.Unavailable))
	cc := dial(t, srv.Addr, newSuite(t, fast(h.options()...)...))
	if _, err := echo(t, cc, ctxTimeout(t, 5*time.Second), "x"); err != nil {
		t.Fatal(err)
	}
	call := h.spansNamed(echoSpan)
	attempts := h.spansNamed("Attempt." + echoSpan)
	if len(call) != 1 || len(attempts) != 3 {
		t.Fatalf("spans = %d call, %d attempts; want 1 and 3", len(call), len(attempts))
	}
	for i, a := range attempts {
		if got := attr(a, "rebound.attempt").AsInt64(); got != int64(i+1) {
			t.Errorf("attempt span %d rebound.attempt = %d; want %d", i, got, i+1)
		}
		want := "UNAVAILABLE"
		if i == 2 {
			want = "OK"
		}
		if got := attr(a, "rpc.response.status_code").AsString(); got != want {
			t.Errorf("attempt %d code = %q; want %q", i+1, got, want)
		}
		if a.Parent().SpanID() != call[0].SpanContext().SpanID() {
			t.Errorf("attempt %d is not a child of the call span", i+1)
		}
	}
	var backoffs int
	for _, e := range call[0].Events() {
		if e.Name == "rebound.backoff" {
			backoffs++
		}
	}
	if backoffs != 2 {
		t.Errorf("backoff events = %d; want 2", backoffs)
	}
	if got := attr(call[0], "rebound.attempts").AsInt64(); got != 3 {
		t.Errorf("call rebound.attempts = %d; want 3", got)
	}
	if got := h.sum(t, "rebound.client.attempts", attribute.String("rpc.response.status_code", "UNAVAILABLE")); got != 2 {
		t.Errorf("attempts{UNAVAILABLE} = %d; want 2", got)
	}
	if got := h.sum(t, "grpc.client.call.retries"); got != 2 {
		t.Errorf("grpc.client.call.retries sum = %d; want 2", got)
	}
}

func TestTelemetryShortCircuitAnsweredByCache(t *testing.T) {
	h := newTelemetryHarness(t)
	srv := testserver.Start(t, "primary", testserver.OK)
	pol := &reboundv1.RecoveryPolicy{
		Retry:    &reboundv1.Retry{MaxAttempts: proto.Uint32(1)},
		Pattern:  stickyBreaker(2),
		Fallback: &reboundv1.Fallback{Steps: []*reboundv1.FallbackStep{cacheStep(60_000)}},
	}
	cc := dial(t, srv.Addr, newSuite(t, append(h.options(), interceptor.WithPolicy(echoMethod, pol))...))
	if _, err := echo(t, cc, ctxTimeout(t, 5*time.Second), "a"); err != nil {
		t.Fatal(err)
	}
	srv.SetBehavior(testserver.Fail(codes.Unavailable))
	for range 3 { // two failures open the circuit (each answered from the cache), the third is short-circuited
		if _, err := echo(t, cc, ctxTimeout(t, 5*time.Second), "a"); err != nil {
			t.Fatalf("Echo() error = %v; want the cached reply", err)
		}
	}
	calls := h.spansNamed(echoSpan)
	last := calls[len(calls)-1]
	var sc bool
	for _, e := range last.Events() {
		sc = sc || e.Name == "rebound.short_circuit"
	}
	if !sc || attr(last, "rebound.served_by").AsString() != "cache" || attr(last, "rebound.attempts").AsInt64() != 0 {
		t.Errorf("last call span: events %v, served_by %q, attempts %d; want a short_circuit event, cache, 0 attempts",
			last.Events(), attr(last, "rebound.served_by").AsString(), attr(last, "rebound.attempts").AsInt64())
	}
	steps := h.spansNamed("rebound.fallback.cache")
	if len(steps) != 3 || steps[2].Parent().SpanID() != last.SpanContext().SpanID() || attr(steps[2], "rebound.cache.result").AsString() != "hit" {
		t.Errorf("cache step spans = %d; want 3, the last a child of the last call, result hit", len(steps))
	}
	if got := h.sum(t, "rebound.client.short_circuits"); got != 1 {
		t.Errorf("short_circuits = %d; want 1", got)
	}
	if got := h.sum(t, "rebound.client.cache.lookups", attribute.String("rebound.cache.result", "hit")); got != 3 {
		t.Errorf("cache lookups{hit} = %d; want 3", got)
	}
	if got := h.sum(t, "rebound.client.calls", attribute.String("rebound.served_by", "cache")); got != 3 {
		t.Errorf("calls{cache} = %d; want 3", got)
	}
	if got := h.sum(t, "rebound.pattern.transitions", attribute.String("rebound.pattern.to", "open")); got != 1 {
		t.Errorf("transitions{to open} = %d; want 1", got)
	}
	if got := h.sum(t, "rebound.pattern.state"); got != 1 {
		t.Errorf("pattern state gauge = %d; want 1 (open)", got)
	}
}

func TestTelemetryAlternateNestsOtelgrpc(t *testing.T) {
	h := newTelemetryHarness(t)
	primary := testserver.Start(t, "primary", testserver.Fail(codes.Unavailable))
	replica := testserver.Start(t, "replica", testserver.OK)
	statsOpt := grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(h.tp)))
	alt, err := grpc.NewClient(replica.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()), statsOpt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = alt.Close() })
	s := newSuite(t, fast(append(h.options(), interceptor.WithAlternate("replica", alt), withChain(alternateStep("replica")))...)...)
	cc, err := grpc.NewClient(primary.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDisableRetry(),
		grpc.WithChainUnaryInterceptor(s.UnaryClientInterceptor()), statsOpt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	if _, err := testpb.NewEchoServiceClient(cc).Echo(ctxTimeout(t, 5*time.Second), &testpb.EchoRequest{}); err != nil {
		t.Fatal(err)
	}
	call := h.spansNamed(echoSpan)
	if len(call) != 1 {
		t.Fatalf("rebound call spans = %d; want 1", len(call))
	}
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range h.spans.Ended() {
		byID[s.SpanContext().SpanID()] = s
	}
	// otelgrpc's spans (one per attempt, CLIENT, same name as ours) nest under
	// our attempt spans, and the alternate's under our fallback step span.
	var underAttempt, underStep int
	for _, s := range h.spans.Ended() {
		if s.InstrumentationScope().Name == interceptor.ScopeName {
			continue
		}
		parent, ok := byID[s.Parent().SpanID()]
		if !ok || parent.SpanContext().TraceID() != call[0].SpanContext().TraceID() {
			t.Errorf("otelgrpc span %v has no parent in the call's trace", s.SpanContext().SpanID())
			continue
		}
		switch parent.Name() {
		case "Attempt." + echoSpan:
			underAttempt++
		case "rebound.fallback.alternate":
			underStep++
			if attr(parent, "rebound.fallback.alternate").AsString() != "replica" {
				t.Errorf("fallback step span alternate = %q; want replica", attr(parent, "rebound.fallback.alternate").AsString())
			}
		}
	}
	if underAttempt != 4 || underStep != 1 {
		t.Errorf("otelgrpc spans under attempt/step spans = %d/%d; want 4/1", underAttempt, underStep)
	}
	if got := h.sum(t, "rebound.client.fallbacks", attribute.String("rebound.fallback.step", "alternate"), attribute.String("rebound.fallback.result", "answered")); got != 1 {
		t.Errorf("fallbacks{alternate, answered} = %d; want 1", got)
	}
}

func TestTelemetryOffCostsNoAllocation(t *testing.T) {
	// Providers are the otel globals, never set: no span, no allocation.
	s := newSuite(t)
	ic := s.UnaryClientInterceptor()
	ctx := context.Background()
	req, reply := &testpb.EchoRequest{}, &testpb.EchoResponse{}
	_ = ic(ctx, echoMethod, req, reply, nil, nilInvoker)
	if n := testing.AllocsPerRun(200, func() { _ = ic(ctx, echoMethod, req, reply, nil, nilInvoker) }); n != 0 {
		t.Errorf("allocs/op with telemetry off = %v; want 0", n)
	}
}

func TestTelemetryStreamRetriedBeforeCommit(t *testing.T) {
	h := newTelemetryHarness(t)
	srv := testserver.Start(t, "primary", testserver.FailFirst(1, codes.Unavailable))
	cc := dialStream(t, srv.Addr, newSuite(t, fast(h.options()...)...))
	if _, err := runList(ctxTimeout(t, 5*time.Second), cc, []string{"x"}); err != nil {
		t.Fatalf("List() error = %v", err)
	}
	const listSpan = "rebound.testing.v1.EchoService/List"
	calls := h.spansNamed(listSpan)
	attempts := h.spansNamed("Attempt." + listSpan)
	if len(calls) != 1 || len(attempts) != 2 {
		t.Fatalf("spans = %d call, %d attempts; want 1 and 2", len(calls), len(attempts))
	}
	for i, want := range []string{"UNAVAILABLE", "OK"} {
		a := attempts[i]
		if got := attr(a, "rpc.response.status_code").AsString(); got != want {
			t.Errorf("attempt %d code = %q; want %q", i+1, got, want)
		}
		if a.Parent().SpanID() != calls[0].SpanContext().SpanID() {
			t.Errorf("attempt %d is not a child of the stream's call span", i+1)
		}
	}
	if got := attr(calls[0], "rebound.attempts").AsInt64(); got != 2 {
		t.Errorf("call rebound.attempts = %d; want 2", got)
	}
	if got := h.sum(t, "rebound.client.attempts", attribute.String("rpc.response.status_code", "UNAVAILABLE")); got != 1 {
		t.Errorf("attempts{UNAVAILABLE} = %d; want 1", got)
	}
	if got := h.sum(t, "rebound.client.calls", attribute.String("rebound.served_by", "primary")); got != 1 {
		t.Errorf("calls{primary} = %d; want 1", got)
	}
	if got := h.sum(t, "grpc.client.call.retries"); got != 1 {
		t.Errorf("grpc.client.call.retries = %d; want 1", got)
	}
}
