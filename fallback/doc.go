// Package fallback decides what answers a call when the primary target cannot:
// alternate targets, a cached reply, a static reply or a function, tried in the
// order the method's policy lists them.
//
// # Cached replies
//
// The cache step answers with a reply stored after an earlier successful call
// of the same method, with the same request, for the same scope. A reply is
// kept as its protobuf wire bytes (deterministic marshal) in an [Entry], under a
// key derived by [Key] (or [AppendKey]) from:
//
//   - the full method name, e.g. "/pkg.Svc/Get";
//   - the deterministic marshal of the request;
//   - the values of the metadata keys that the policy names as the scope
//     (tenant, authorization, ...), in the order the policy lists them.
//
// The inputs are length-prefixed and hashed with SHA-256, so one tenant can
// never be served another tenant's reply and no scope value (a bearer token,
// say) appears in the key in plain form.
//
// Any [Cache] implementation can be plugged in. Two come with rebound:
//
//   - [MemoryCache], the embedded default: bounded by bytes, with an optional
//     TTL, no background goroutines;
//   - [github.com/rebound-grpc/rebound/fallback/rediscache], shared by a fleet
//     of clients through Redis.
//
// A cache failure is a miss, never a call failure, and a cache never makes a
// call wait past its deadline.
//
// # Concurrency
//
// Every type in this package is safe for concurrent use.
package fallback
