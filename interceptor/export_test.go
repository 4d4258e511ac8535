package interceptor

import (
	"time"

	"google.golang.org/grpc/metadata"
)

// Exported for tests only.

// Pushback is pushback.
func Pushback(md metadata.MD) (time.Duration, bool) { return pushback(md) }

// MaxPushback is maxPushback.
const MaxPushback = maxPushback

// PushbackKey is pushbackKey.
const PushbackKey = pushbackKey

// BudgetTokens returns the tokens left in the retry budget of target, and
// whether the Suite has one for it yet.
func (s *Suite) BudgetTokens(target string) (float64, bool) {
	b, ok := (*s.budgets.Load())[target]
	if !ok {
		return 0, false
	}
	return b.Tokens(time.Now()), true
}
