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
// The healthy path costs one map lookup and a few atomic loads: no allocation,
// no lock, no log line.
package interceptor
