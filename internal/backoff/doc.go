// Package backoff computes the delay before a retry. It owns the three jitter
// kinds rebound offers (full, decorrelated and proportional) and nothing else:
// it keeps no state, starts no timers and never sleeps. The retry loop in
// package interceptor calls [Config.Delay] once per retry with a random number
// it draws itself, so the functions here are pure and trivially safe for
// concurrent use.
//
// There are no defaults in this package: the interceptor fills [Config] from
// the validated retry policy. Every input is nevertheless accepted — negative,
// NaN or out-of-range values are clamped as documented on [Config.Delay] — so
// a delay is never negative, never NaN and never above 1.2 × [Config.Max].
package backoff
