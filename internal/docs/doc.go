// Package docs holds the repository-wide documentation and layout checks:
// every package has a doc.go with a package comment, every exported
// identifier has a doc comment, the README's option reference covers every
// field of proto/rebound/v1/options.proto, and the import rules of the
// layout hold (pattern and internal/backoff stay free of the transport, only
// fallback/rediscache imports Redis). It has no code of its own.
package docs
