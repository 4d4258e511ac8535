// Package interceptor is the face of rebound: the gRPC client interceptors
// that give every call a recovery policy, and the Suite that owns their state.
//
// A Suite is built once per client process with New, which resolves and
// validates the policy of every method it can see (protoregistry.GlobalFiles
// by default), and is plugged into a connection:
//
//	suite, err := interceptor.New(interceptor.WithAlternate("replica", replicaConn))
//	if err != nil { ... }          // names every invalid method and field
//	defer suite.Close()
//	conn, err := grpc.NewClient(target,
//		grpc.WithDisableRetry(), // rebound retries; grpc's own retries would multiply them
//		grpc.WithChainUnaryInterceptor(suite.UnaryClientInterceptor()),
//		grpc.WithChainStreamInterceptor(suite.StreamClientInterceptor()),
//	)
//
// The path of one call composes, outermost first:
//
//	Fallback(Retry(Pattern(call)))
//
// The method's recovery pattern (package pattern) decides whether the target
// may be tried; the retry loop repeats retryable failures with jittered
// backoff inside the caller's deadline, honouring server pushback, the
// method's idempotency and a retry budget shared per target; when the target
// cannot answer, the fallback chain does.
//
// Methods with a hedging policy (idempotent ones only) send extra attempts
// after a delay instead of retrying, each into its own reply message; the
// first success wins and the others are cancelled.
//
// Telemetry (WithTracerProvider, WithMeterProvider, WithLogger) tells the
// story of every call: a call span, a span per attempt and per fallback step,
// metrics by method and target, and logs of state changes. With no provider
// set it costs nothing.
//
// The healthy path costs a few atomic loads (the method's state is found by
// the address of its name): no allocation, no lock, no log line.
//
// Streams get the same protection until they are committed (gRFC A6: response
// headers or a first response message received, or more client messages sent
// than the 256 KiB replay buffer holds). Before that, a failure re-opens the
// stream, on the primary or on an alternate, and replays the client messages
// sent so far; after it, errors reach the caller unchanged and no message is
// ever delivered twice. A server stream can also be served from the cache:
// the messages of the last complete stream with the same request. A healthy
// stream costs one allocation, and none per message.
package interceptor
