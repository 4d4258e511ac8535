// Command outage shows what rebound does for a gRPC client while the server it
// calls fails and recovers. One command, nothing to install:
//
//	go run ./examples/outage
//
// In one process it starts:
//
//   - a primary CatalogService server on 127.0.0.1 whose behaviour follows a
//     scripted schedule, by default about 20 s: healthy, hard down (every
//     attempt fails at once with UNAVAILABLE), slow (a brownout: replies take
//     400 ms, longer than the 150 ms per-attempt timeout), flaky (30 % of the
//     attempts fail) and healed;
//   - a replica server, the alternate: a warm standby that holds only the
//     best-selling items (NOT_FOUND for the others) and answers in ~15 ms;
//   - a client whose connection to the primary carries a rebound Suite with a
//     memory cache and the replica registered as the alternate "replica",
//     driving an open-loop load (100 calls/s by default, whether or not earlier
//     calls have returned) over 200 items, a few of them asked for often.
//
// Everything the client does for GetItem is configured in the demo's own
// .proto, proto/catalog/v1/catalog.proto, with rebound's method options:
// retries with a per-attempt timeout, the exponential_backoff recovery pattern,
// and the fallback chain replica → cache (replies up to 5 minutes old) →
// static reply; the method is NO_SIDE_EFFECTS, so it may be retried. The Go
// code only registers the alternate and the cache (and, for -pattern partial
// or adaptive, swaps the pattern).
//
// Every second it prints a row: the calls started in that second and how they
// were answered (by the primary at once, by the primary after a retry, by the
// replica, from the cache, by the static reply, or not at all), the attempts
// that reached the primary, the states the recovery pattern went through (and,
// for partial and adaptive, the share of calls it admitted), and the latency
// the caller saw (p50, p99). A row is printed once all of its calls have
// returned. At the end it prints a summary:
//
//   - availability: the share of calls that got a reply from anywhere, overall
//     and while the primary was hard down;
//   - load amplification: attempts that reached the primary per call, overall
//     and while it was hard down (plain retries with 3 attempts would send 3);
//   - time to recover: from the heal to the first 1 s window in which the
//     primary answered at least 95 % of the calls; and, when the outage ended
//     before the heal (the flaky phase), the same from the end of the last
//     down or slow phase;
//   - a line per phase.
//
// Flags:
//
//	-pattern backoff|partial|adaptive   the recovery pattern (default backoff: catalog.proto's)
//	-duration 6s                        scale the schedule to this length
//	-rate 100                           calls per second
//	-schedule healthy:4s,down:5s,slow:4s,flaky:4s,healed:3s
//	                                    the primary's phases: KIND[=PARAM]:DURATION, kinds
//	                                    healthy, down, slow[=DELAY], flaky[=PERCENT%], healed
//	-json                               the summary as JSON on stdout (rows on stderr)
//	-quiet                              no rows
//	-plot outage.svg                    an SVG chart: calls per second stacked by how they
//	                                    were answered, the primary's attempts per second,
//	                                    phases shaded, the pattern's state below
//	-v                                  rebound's own log lines on stderr
//
// The short run CI makes:
//
//	go run ./examples/outage -schedule healthy:1s,down:2s,healed:4s -json
//
// -pattern partial and -pattern adaptive set only the pattern oneof of the
// policy (interceptor.WithPolicy), keeping catalog.proto's retries and
// fallbacks; partial reuses the proto's breaker settings for when to open.
//
// Telemetry: with OTEL_EXPORTER_OTLP_ENDPOINT set (for example
// http://127.0.0.1:4317, a Jaeger v2), every call's trace — call span, attempt
// spans, fallback step spans — is exported over OTLP/gRPC as service
// rebound-outage-demo; see telemetryOptions.
package main
