// Package redistest finds or starts a real redis-server for tests.
//
// [Addr] returns the address of a server: $REBOUND_REDIS_ADDR if set, else a
// redis-server it starts on a free loopback port (see [Start]). Without
// either, the test is skipped with the message
// "no redis: set REBOUND_REDIS_ADDR or install redis-server".
//
// [Start] always starts a server of the test's own, which the test may stop,
// restart, pause and resume to simulate outages; the server is stopped in
// t.Cleanup. It writes nothing outside t.TempDir.
//
// Everything in this package is safe for concurrent use by parallel tests;
// each [Server] belongs to one test.
package redistest
