package main

// End-to-end tests of a hostile instance directory: planted links, a
// keyring or directory that others may change.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/servald/servald/daemon"
)

// TestPlantedLinksUntouched: a symlink planted as servald.log or
// servald.pid makes start refuse with one line, and the file it points at
// keeps its content (start used to truncate both through the links).
func TestPlantedLinksUntouched(t *testing.T) {
	t.Parallel()
	for _, name := range []string{daemon.LogName, daemon.PidName} {
		inst := instance(t)
		if err := os.MkdirAll(inst, 0o700); err != nil {
			t.Fatal(err)
		}
		victim := filepath.Join(t.TempDir(), "precious")
		if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(victim, filepath.Join(inst, name)); err != nil {
			t.Fatal(err)
		}
		code, _, errOut := runOnce(t, nil, "start", "--instance", inst, "--udp", "127.0.0.1:0")
		if code == 0 {
			runOnce(t, nil, "stop", "--instance", inst)
			t.Fatalf("start with %s a symlink: exit 0", name)
		}
		if strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "symbolic link") {
			t.Errorf("start with %s a symlink: want one line naming the link, got %q", name, errOut)
		}
		if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
			t.Errorf("the target of the planted %s now holds %q", name, b)
		}
	}
}

// TestUnsafeInstanceRefused: a keyring others may read (0644) or an
// instance directory others may write (0777) is refused with one line
// saying what to chmod; nothing is created or changed.
func TestUnsafeInstanceRefused(t *testing.T) {
	t.Parallel()
	inst := instance(t)
	code, sid, errOut := runOnce(t, nil, "id", "self", "--instance", inst)
	if code != 0 {
		t.Fatalf("id self: exit %d: %s", code, errOut)
	}
	keyring := filepath.Join(inst, "keyring")
	if _, err := os.Stat(keyring); err != nil {
		t.Fatalf("the keyring is not at %s: %v", keyring, err)
	}
	before, _ := os.ReadFile(keyring)
	os.Chmod(keyring, 0o644)
	code, out, errOut := runOnce(t, nil, "id", "self", "--instance", inst)
	if code != 1 || out != "" {
		t.Errorf("0644 keyring: exit %d, stdout %q", code, out)
	}
	oneLine(t, errOut, "run chmod 600 "+keyring)
	os.Chmod(keyring, 0o600)
	os.Chmod(inst, 0o777)
	code, out, errOut = runOnce(t, nil, "id", "self", "--instance", inst)
	if code != 1 || out != "" {
		t.Errorf("0777 directory: exit %d, stdout %q", code, out)
	}
	oneLine(t, errOut, "run chmod 700 "+inst)
	os.Chmod(inst, 0o700)
	if after, _ := os.ReadFile(keyring); string(after) != string(before) {
		t.Error("the keyring changed")
	}
	if _, again, _ := runOnce(t, nil, "id", "self", "--instance", inst); again != sid {
		t.Errorf("after the fixes, id self = %q, want %q", again, sid)
	}
}

// TestDaemonLogAppended: the daemon's log keeps earlier runs' lines.
func TestDaemonLogAppended(t *testing.T) {
	t.Parallel()
	inst := instance(t)
	for range 2 {
		startDaemon(t, inst)
		if code, _, errOut := runOnce(t, nil, "stop", "--instance", inst); code != 0 {
			t.Fatalf("stop: exit %d: %s", code, errOut)
		}
	}
	b, err := os.ReadFile(filepath.Join(inst, daemon.LogName))
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(filepath.Join(inst, daemon.LogName))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("log mode %v, want 0600", fi.Mode().Perm())
	}
	if n := strings.Count(string(b), "servald: started"); n != 2 {
		t.Errorf("the log holds %d starts after two runs (it was truncated on each start):\n%s", n, b)
	}
}
