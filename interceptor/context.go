package interceptor

import (
	"context"

	"github.com/rebound-grpc/rebound/pattern"
)

type priorityKey struct{}

// WithPriority returns a context whose calls carry priority p, overriding the
// method's policy. While a target recovers, higher priorities are admitted first.
func WithPriority(ctx context.Context, p pattern.Priority) context.Context {
	return context.WithValue(ctx, priorityKey{}, p)
}

// priorityOf returns the call's priority: the context's, else def.
func priorityOf(ctx context.Context, def pattern.Priority) pattern.Priority {
	if p, ok := ctx.Value(priorityKey{}).(pattern.Priority); ok {
		return p
	}
	return def
}
