package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runInProcess runs a command line in this process.
func runInProcess(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// TestSubcommandRequired: a group command with no subcommand or an unknown
// one is a usage error (exit 2) on one line, with cobra's suggestion where
// it has one. It used to print help and exit 0.
func TestSubcommandRequired(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"keyring", "lisst"}, `unknown command "lisst" for "servald keyring"; did you mean list?`},
		{[]string{"id", "sefl"}, `unknown command "sefl" for "servald id"; did you mean self?`},
		{[]string{"msp"}, "servald msp needs a subcommand: connect, listen"},
		{[]string{"msp", "xyzzy"}, `unknown command "xyzzy" for "servald msp"; its subcommands are connect, listen`},
		{[]string{"lisst"}, `unknown command "lisst" for "servald"`},
	} {
		code, out, errs := runInProcess(t, tc.args...)
		if code != 2 || !strings.Contains(errs, tc.want) || strings.Count(errs, "\n") != 1 || out != "" {
			t.Errorf("servald %s: exit %d, stdout %q, stderr %q; want exit 2 and one line with %q", strings.Join(tc.args, " "), code, out, errs, tc.want)
		}
	}
}

// TestVersion: servald version and --version name the revision the binary
// was built from (the e2e binary is built with -buildvcs=auto).
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := exec.Command(servaldBin, args...).Output()
		if err != nil {
			t.Fatalf("servald %v: %v", args, err)
		}
		line := string(out)
		if !strings.HasPrefix(line, "servald ") || !strings.Contains(line, "go1.") || strings.Count(line, "\n") != 1 {
			t.Fatalf("servald %v printed %q", args, line)
		}
		rev, err := exec.Command("git", "rev-parse", "HEAD").Output()
		if err != nil {
			t.Logf("no git here (%v): the revision is not checked", err)
			continue
		}
		// The go command stamps no revision in a linked worktree (a
		// .git file, not a directory); CI's clone is a plain one.
		if fi, err := os.Stat(filepath.Join("..", "..", ".git")); err != nil || !fi.IsDir() {
			t.Logf("not a plain git clone: the revision is not checked")
			continue
		}
		if want := strings.TrimSpace(string(rev))[:12]; !strings.Contains(line, want) {
			t.Errorf("servald %v = %q: want the revision %s", args, line, want)
		}
	}
}

// TestManPages: servald man DIR writes a page per command.
func TestManPages(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "man1")
	if code, _, errs := runInProcess(t, "man", dir); code != 0 {
		t.Fatalf("servald man: exit %d: %s", code, errs)
	}
	for _, page := range []string{"servald.1", "servald-msp-listen.1", "servald-msp-connect.1", "servald-split-connect.1"} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(".TH")) {
			t.Errorf("%s is not a man page: %.80q", page, b)
		}
	}
	if code, _, _ := runInProcess(t, "man"); code != 2 {
		t.Errorf("servald man without DIR: exit %d, want 2", code)
	}
}
