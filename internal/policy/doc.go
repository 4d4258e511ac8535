// Package policy owns the recovery policy of every method: it merges the
// sources (Go overrides, proto method and service options, Suite defaults) in
// precedence order, validates every field, and compiles the result once into an
// immutable Table that the interceptors read per call with one map lookup and
// no allocation.
//
// Precedence, strongest first:
//
//	WithPolicy(fullMethod) > WithPolicy(service) > (rebound.v1.method_policy) >
//	(rebound.v1.service_policy) > WithDefaultPolicy > built-in defaults
//
// Merging is field by field (see Merge). Nothing here is exported to users: the
// interceptor package is the face of the library.
package policy
