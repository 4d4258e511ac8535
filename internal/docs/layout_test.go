package docs_test

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const redisPath = "github.com/redis/go-redis/v9"

// TestImportRules keeps the layout of DESIGN.md: pattern imports only the
// standard library and grpc/codes (never the gRPC transport nor
// OpenTelemetry), internal/backoff only the standard library, and
// fallback/rediscache is the only package that imports Redis. Test files are
// not held to it.
func TestImportRules(t *testing.T) {
	only := map[string]func(path string) bool{
		"pattern":          func(p string) bool { return stdlib(p) || p == "google.golang.org/grpc/codes" },
		"internal/backoff": stdlib,
	}
	for _, dir := range packageDirs(t) {
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			t.Fatal(err)
		}
		rel = filepath.ToSlash(rel)
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, name := range files {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range f.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				if allowed, ok := only[rel]; ok && !allowed(path) {
					t.Errorf("%s imports %q; the package may not", name, path)
				}
				if strings.HasPrefix(path, redisPath) && rel != "fallback/rediscache" {
					t.Errorf("%s imports %q; only fallback/rediscache may import Redis", name, path)
				}
			}
		}
	}
}

// stdlib reports whether an import path is in the standard library.
func stdlib(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}
