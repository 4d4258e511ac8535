// Package testserver runs the test service (internal/testpb) on a real TCP
// listener on 127.0.0.1, with a scripted behaviour per call: status codes,
// delays, trailers (pushback). It records what every attempt carried.
// Nothing outside rebound's own tests imports it.
package testserver
