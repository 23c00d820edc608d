package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCmdStaysThin: the CLI keeps flags, printing and exit codes; logic
// belongs in instance and the libraries (docs/CONVENTIONS.md). Its
// non-test files stay under maxCmdLines lines, and no function in them is
// longer than maxCmdFunc lines.
func TestCmdStaysThin(t *testing.T) {
	const maxCmdLines, maxCmdFunc = 2000, 60
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	total := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		total += strings.Count(string(src), "\n")
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok {
				continue
			}
			if n := fset.Position(fn.End()).Line - fset.Position(fn.Pos()).Line + 1; n > maxCmdFunc {
				t.Errorf("%s: %s is %d lines, more than %d: move its logic into instance", name, fn.Name.Name, n, maxCmdFunc)
			}
		}
	}
	if total >= maxCmdLines {
		t.Errorf("cmd/servald has %d non-test lines, at least %d: move logic into instance", total, maxCmdLines)
	}
	t.Logf("cmd/servald: %d non-test lines", total)
}
