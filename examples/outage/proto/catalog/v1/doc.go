// Package catalogv1 is the generated code of catalog/v1/catalog.proto, the
// service of the outage demo (examples/outage). The method policy of
// CatalogService.GetItem lives in that file, as rebound options; importing
// this package registers it in protoregistry.GlobalFiles, where
// interceptor.New finds it.
//
// Regenerate with `go tool -modfile=tools/go.mod buf generate` from the
// repository root.
package catalogv1
