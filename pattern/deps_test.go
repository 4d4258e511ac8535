package pattern

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// parsePackage parses the non-test Go files of the package in the current
// directory.
func parsePackage(t *testing.T) (*token.FileSet, []*ast.File) {
	t.Helper()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return fset, files
}

// codesPath is the one gRPC package pattern may import.
const codesPath = "google.golang.org/grpc/codes"

// TestImports keeps pattern free of the gRPC transport and OpenTelemetry:
// its files import only the standard library and grpc/codes.
func TestImports(t *testing.T) {
	t.Parallel()
	fset, files := parsePackage(t)
	for _, f := range files {
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if first, _, _ := strings.Cut(path, "/"); strings.Contains(first, ".") && path != codesPath {
				t.Errorf("%s imports %q; want only the standard library and %s", fset.Position(imp.Pos()), path, codesPath)
			}
		}
	}
}

// TestDeps checks the transitive dependencies with go list: nothing beyond
// the standard library and what grpc/codes itself needs, and never
// OpenTelemetry or another part of gRPC.
func TestDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	t.Parallel()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go command not found: %v", err)
	}
	list := func(pkg string) map[string]bool {
		out, err := exec.Command(goTool, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		deps := map[string]bool{}
		for _, p := range strings.Fields(string(out)) {
			deps[p] = true
		}
		return deps
	}
	allowed := list(codesPath)
	for dep := range list(".") {
		switch {
		case dep == "github.com/rebound-grpc/rebound/pattern":
		case strings.Contains(dep, "opentelemetry"):
			t.Errorf("pattern depends on %s; want no OpenTelemetry", dep)
		case !allowed[dep]:
			t.Errorf("pattern depends on %s; want only the standard library, %s and its dependencies", dep, codesPath)
		}
	}
}
