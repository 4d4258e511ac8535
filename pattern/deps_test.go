package pattern

import (
	"os/exec"
	"strings"
	"testing"
)

// codesPath is the one gRPC package pattern may import (internal/docs checks
// its direct imports; TestDeps the transitive ones).
const codesPath = "google.golang.org/grpc/codes"

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
