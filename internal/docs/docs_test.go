package docs_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	reboundv1 "github.com/rebound-grpc/rebound/proto/rebound/v1"
)

// root is the module root, two levels up.
const root = "../.."

// packageDirs returns the directories of the root module holding Go files,
// skipping nested modules (bench/, tools/) and hidden directories.
func packageDirs(t *testing.T) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if path != root && (strings.HasPrefix(name, ".") || name == "testdata") {
			return filepath.SkipDir
		}
		if path != root {
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir
			}
		}
		matches, _ := filepath.Glob(filepath.Join(path, "*.go"))
		if len(matches) > 0 {
			dirs = append(dirs, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

func TestEveryPackageHasDocGo(t *testing.T) {
	for _, dir := range packageDirs(t) {
		b, err := os.ReadFile(filepath.Join(dir, "doc.go"))
		if err != nil {
			t.Errorf("%s: no doc.go: every package says what it owns in a doc.go", dir)
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), "doc.go", b, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			t.Errorf("%s/doc.go: %v", dir, err)
			continue
		}
		if f.Doc == nil || len(strings.TrimSpace(f.Doc.Text())) < 40 {
			t.Errorf("%s/doc.go: the package comment is missing or too short to say what the package owns", dir)
		}
		// The package comment lives in doc.go only (generated files aside).
		others, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, o := range others {
			base := filepath.Base(o)
			if base == "doc.go" || strings.HasSuffix(base, "_test.go") || strings.HasSuffix(base, ".pb.go") {
				continue
			}
			of, err := parser.ParseFile(token.NewFileSet(), o, nil, parser.ParseComments|parser.PackageClauseOnly)
			if err == nil && of.Doc != nil {
				t.Errorf("%s has a package comment; want it only in doc.go", o)
			}
		}
	}
}

func TestExportedIdentifiersHaveDocs(t *testing.T) {
	for _, dir := range packageDirs(t) {
		fset := token.NewFileSet()
		pkgs, err := parser.ParseDir(fset, dir, func(fi fs.FileInfo) bool {
			return !strings.HasSuffix(fi.Name(), "_test.go") && !strings.HasSuffix(fi.Name(), ".pb.go")
		}, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, pkg := range pkgs {
			if pkg.Name == "main" {
				continue
			}
			for name, f := range pkg.Files {
				for _, decl := range f.Decls {
					for _, id := range undocumented(decl) {
						t.Errorf("%s: %s: exported identifier without a doc comment", fset.Position(id.Pos()), id.Name)
						_ = name
					}
				}
			}
		}
	}
}

// undocumented returns the exported identifiers of decl that have no doc comment.
func undocumented(decl ast.Decl) []*ast.Ident {
	var out []*ast.Ident
	switch d := decl.(type) {
	case *ast.FuncDecl:
		if !d.Name.IsExported() || d.Doc != nil {
			return nil
		}
		if d.Recv != nil && !exportedRecv(d.Recv) {
			return nil
		}
		out = append(out, d.Name)
	case *ast.GenDecl:
		for _, spec := range d.Specs {
			switch s := spec.(type) {
			case *ast.TypeSpec:
				if s.Name.IsExported() && s.Doc == nil && d.Doc == nil {
					out = append(out, s.Name)
				}
			case *ast.ValueSpec:
				for _, n := range s.Names {
					// A grouped const/var block may document the group.
					if n.IsExported() && s.Doc == nil && s.Comment == nil && d.Doc == nil {
						out = append(out, n)
					}
				}
			}
		}
	}
	return out
}

func exportedRecv(fl *ast.FieldList) bool {
	if len(fl.List) == 0 {
		return false
	}
	t := fl.List[0].Type
	if s, ok := t.(*ast.StarExpr); ok {
		t = s.X
	}
	if ix, ok := t.(*ast.IndexExpr); ok {
		t = ix.X
	}
	id, ok := t.(*ast.Ident)
	return ok && id.IsExported()
}

// TestReadmeCoversEveryOption checks that the README's option reference names
// every field of the options proto, so the reference cannot drift from it.
func TestReadmeCoversEveryOption(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	msgs := reboundv1.File_rebound_v1_options_proto.Messages()
	for i := 0; i < msgs.Len(); i++ {
		m := msgs.Get(i)
		fields := m.Fields()
		for j := 0; j < fields.Len(); j++ {
			f := fields.Get(j)
			want := "`" + string(m.Name()) + "." + string(f.Name()) + "`"
			if !strings.Contains(readme, want) {
				t.Errorf("README.md does not document %s (field %d of %s)", want, f.Number(), m.FullName())
			}
		}
	}
	exts := reboundv1.File_rebound_v1_options_proto.Extensions()
	for i := 0; i < exts.Len(); i++ {
		if name := string(exts.Get(i).FullName()); !strings.Contains(readme, name) {
			t.Errorf("README.md does not mention the extension %s", name)
		}
	}
	_ = protoreflect.FullName("")
}
