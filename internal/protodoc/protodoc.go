package protodoc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Check fails t for every phrase that docs/PROTOCOL.md (found by walking up
// from the working directory to go.mod) does not contain.
func Check(t testing.TB, phrases ...string) {
	t.Helper()
	doc := fold(read(t))
	for _, p := range phrases {
		if !strings.Contains(doc, fold(p)) {
			t.Errorf("docs/PROTOCOL.md does not say %q: update the document or the code", p)
		}
	}
}

func read(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			b, err := os.ReadFile(filepath.Join(dir, "docs", "PROTOCOL.md"))
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("protodoc: no go.mod above the working directory")
		}
		dir = up
	}
}

func fold(s string) string { return strings.Join(strings.Fields(s), " ") }
