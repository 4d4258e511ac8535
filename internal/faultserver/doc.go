// Package faultserver runs the test service (internal/testpb EchoService) on a
// real TCP listener with faults injected at run time: status codes, delays,
// a black hole (the call is accepted and never answered until its context
// ends), a connection reset in the middle of a call, GOAWAY (a graceful stop
// of the serving grpc.Server while calls are in flight; new connections go to
// a fresh one on the same port), a slow first byte and partial streams (k
// messages, then a failure).
//
// A [Server]'s behaviour is a [Fault], or a [Behavior] that picks one per
// attempt; [Server.Set] and [Server.SetBehavior] change it at any time. Every
// reply carries the server's name and the caller's tenant (the [TenantKey]
// metadata), so a test can tell who produced a reply and for whom; every
// attempt is counted per call id (the [CallIDKey] metadata).
//
// Everything here is safe for concurrent use. Nothing outside rebound's own
// tests imports it.
package faultserver
