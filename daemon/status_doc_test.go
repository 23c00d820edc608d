package daemon

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/servald/servald/internal/protodoc"
)

// TestStatusJSONDocumented: every field name of `status --json` is in the
// README's table, and PROTOCOL.md quotes the report's bounds.
func TestStatusJSONDocumented(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "`servald status --json` prints")
	if start < 0 {
		t.Fatal("README has no status --json section")
	}
	doc = doc[start:]
	doc = doc[:strings.Index(doc, "\n## ")]
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type)
	walk = func(typ reflect.Type) {
		for typ.Kind() == reflect.Slice || typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] || typ.PkgPath() == "time" {
			return
		}
		seen[typ] = true
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" || name == "" {
				continue
			}
			if !regexp.MustCompile("`(node)?\\.{0,2}" + regexp.QuoteMeta(name) + "(`|\\[|\\.)").MatchString(doc) {
				t.Errorf("README's status --json table lacks %s (field %s.%s)", name, typ.Name(), f.Name)
			}
			walk(f.Type)
		}
	}
	walk(reflect.TypeOf(StatusSnapshot{}))
	protodoc.Check(t, fmt.Sprintf("'S' report (JSON, ≤ %d KiB)", maxReport>>10),
		fmt.Sprintf("at most %d sessions", maxReportSessions),
		fmt.Sprintf("target and remotes ≤ %d bytes", maxReportText))
}
