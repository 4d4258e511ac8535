// Command hedging measures what hedging does to tail latency: a server on
// 127.0.0.1 answers 5 % of attempts in 200 ms and the rest in about 1 ms; an
// open-loop client calls it at a fixed rate, once with plain calls and twice
// with rebound's hedging (up to 2, then 3 attempts, each after the method's
// observed p95), and prints p50 / p99 / p99.9 latency and the attempts per
// call of each run.
//
//	go run ./examples/hedging                # 15 s per run at 200 calls/s
//	go run ./examples/hedging -duration 5s -json
//
// The method is catalog.v1.CatalogService/GetItem of examples/outage
// (idempotency_level NO_SIDE_EFFECTS, so it may be hedged); the hedging policy
// is given in Go with interceptor.WithPolicy.
package main
