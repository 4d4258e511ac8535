// Package docs holds the repository-wide documentation checks: every package
// has a doc.go with a package comment, every exported identifier has a doc
// comment, and the README's option reference covers every field of
// proto/rebound/v1/options.proto. It has no code of its own.
package docs
