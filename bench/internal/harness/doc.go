// Package harness holds what the benchmarks and the scenario program share:
// a hand-registered unary test service ("/bench.Bench/Call", emptypb.Empty in
// and out) whose behaviour can be switched at run time, and the client
// configuration of every library compared.
package harness
