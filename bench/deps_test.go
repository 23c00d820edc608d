package bench

import (
	"os/exec"
	"strings"
	"testing"
)

// TestProductImportsNoBaseline: kcp-go and the bench packages are for
// measurement only; no product package may depend on them.
func TestProductImportsNoBaseline(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", "github.com/servald/servald/cmd/servald").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 || !strings.Contains(string(out), "github.com/servald/servald/msp\n") {
		t.Fatalf("go list gave %d packages, not servald's dependencies:\n%s", len(deps), out)
	}
	for _, p := range deps {
		if strings.Contains(p, "xtaci/kcp-go") || strings.HasPrefix(p, "github.com/servald/servald/bench") {
			t.Errorf("servald depends on %s", p)
		}
	}
}
