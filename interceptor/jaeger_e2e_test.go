package interceptor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc/codes"

	"github.com/rebound-grpc/rebound/interceptor"
	"github.com/rebound-grpc/rebound/internal/testserver"
)

// jaegerTrace is the part of Jaeger's /api/traces answer the test reads.
type jaegerTrace struct {
	Spans []struct {
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		References    []struct {
			RefType string `json:"refType"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
	} `json:"spans"`
}

// TestJaegerEndToEnd exports a retried-then-fallback call over OTLP to a real
// Jaeger and reads the trace back from Jaeger's query API. .ci/run starts
// Jaeger (tools/jaeger) and sets REBOUND_JAEGER_ADDR (OTLP gRPC) and
// REBOUND_JAEGER_QUERY (HTTP query API).
func TestJaegerEndToEnd(t *testing.T) {
	otlpAddr, queryAddr := os.Getenv("REBOUND_JAEGER_ADDR"), os.Getenv("REBOUND_JAEGER_QUERY")
	if otlpAddr == "" || queryAddr == "" {
		t.Skip("no Jaeger: set REBOUND_JAEGER_ADDR (OTLP gRPC, e.g. 127.0.0.1:4317) and REBOUND_JAEGER_QUERY (e.g. 127.0.0.1:16686); .ci/run does")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(otlpAddr), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	service := fmt.Sprintf("rebound-e2e-%d", time.Now().UnixNano())
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", service))))
	defer func() { _ = tp.Shutdown(context.Background()) }()

	primary := testserver.Start(t, "primary", testserver.Fail(codes.Unavailable))
	replica := testserver.Start(t, "replica", testserver.OK)
	s := newSuite(t, fast(interceptor.WithTracerProvider(tp), interceptor.WithAlternate("replica", plainConn(t, replica.Addr)), withChain(alternateStep("replica")))...)
	cc := dial(t, primary.Addr, s)
	if _, err := echo(t, cc, ctxTimeout(t, 5*time.Second), "x"); err != nil {
		t.Fatal(err)
	}
	if err := tp.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}

	var tr jaegerTrace
	for {
		got, err := queryJaeger(ctx, queryAddr, service)
		if err == nil && len(got) == 1 && len(got[0].Spans) >= 6 {
			tr = got[0]
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("trace of service %s not found in Jaeger: last answer %v, %v", service, got, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	names := map[string]int{}
	parent := map[string]string{}
	nameOf := map[string]string{}
	for _, sp := range tr.Spans {
		names[sp.OperationName]++
		nameOf[sp.SpanID] = sp.OperationName
		for _, r := range sp.References {
			if r.RefType == "CHILD_OF" {
				parent[sp.SpanID] = r.SpanID
			}
		}
	}
	want := map[string]int{echoSpan: 1, "Attempt." + echoSpan: 4, "rebound.fallback.alternate": 1}
	for name, n := range want {
		if names[name] != n {
			t.Errorf("Jaeger has %d spans named %q; want %d (all: %v)", names[name], name, n, names)
		}
	}
	for id, name := range nameOf {
		switch name {
		case echoSpan:
			if p, ok := parent[id]; ok {
				t.Errorf("call span has parent %s (%s); want a root", p, nameOf[p])
			}
		case "Attempt." + echoSpan, "rebound.fallback.alternate":
			if nameOf[parent[id]] != echoSpan {
				t.Errorf("%s's parent = %q; want the call span", name, nameOf[parent[id]])
			}
		}
	}
}

func queryJaeger(ctx context.Context, addr, service string) ([]jaegerTrace, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/api/traces?service="+service, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jaeger: %s", resp.Status)
	}
	var body struct {
		Data []jaegerTrace `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	return body.Data, nil
}
