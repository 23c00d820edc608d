package identity

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/servald/servald/internal/safefs"
)

// keyringIn creates a keyring in a fresh directory and returns its path
// and content.
func keyringIn(t *testing.T) (string, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), KeyringFile)
	if _, err := OpenOrCreateKeyring(path, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, b
}

// wantRefusedAndKept checks that both ways of opening the keyring at path
// refuse it as unsafe (naming want) and leave path and target unchanged.
func wantRefusedAndKept(t *testing.T, path, target string, content []byte, mode os.FileMode, want string) {
	t.Helper()
	for name, open := range map[string]func() (*Keyring, error){
		"OpenKeyring":         func() (*Keyring, error) { return OpenKeyring(path) },
		"OpenOrCreateKeyring": func() (*Keyring, error) { return OpenOrCreateKeyring(path, nil) },
	} {
		k, err := open()
		if err == nil {
			t.Fatalf("%s accepted an unsafe keyring (primary %s)", name, k.Primary().SID().Short())
		}
		if !errors.Is(err, safefs.ErrUnsafe) || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: err = %v, want an unsafe-keyring refusal with %q", name, err, want)
		}
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrDamaged) {
			t.Fatalf("%s: err = %v also matches ErrNotExist/ErrDamaged", name, err)
		}
	}
	b, err := os.ReadFile(target)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(target)
	if !bytes.Equal(b, content) || fi.Mode().Perm() != mode {
		t.Fatalf("keyring changed: mode %v, content %q", fi.Mode(), b)
	}
}

func TestKeyringUnsafeModeRefused(t *testing.T) {
	for _, mode := range []os.FileMode{0o644, 0o666, 0o640, 0o604} {
		path, content := keyringIn(t)
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		wantRefusedAndKept(t, path, path, content, mode, "chmod 600 "+path)
	}
	// 0400 is private: accepted.
	path, _ := keyringIn(t)
	os.Chmod(path, 0o400)
	if _, err := OpenKeyring(path); err != nil {
		t.Fatalf("0400 keyring: %v", err)
	}
}

func TestKeyringSymlinkRefused(t *testing.T) {
	// The planted link points at a valid keyring whose seeds the planter
	// knows: it must not be used, and its target must stay as it is.
	target, content := keyringIn(t)
	path := filepath.Join(t.TempDir(), KeyringFile)
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	wantRefusedAndKept(t, path, target, content, 0o600, "symbolic link")

	// A dangling link: no keyring is created at its target.
	dir := t.TempDir()
	dangling := filepath.Join(dir, KeyringFile)
	os.Symlink(filepath.Join(dir, "elsewhere"), dangling)
	if _, err := OpenOrCreateKeyring(dangling, nil); !errors.Is(err, safefs.ErrUnsafe) {
		t.Fatalf("dangling link: err = %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "elsewhere")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("a keyring was created through a dangling link")
	}
}

func TestKeyringOtherOwnerRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("owner mismatch needs root to chown the keyring to another uid; not root, skipped")
	}
	path, content := keyringIn(t)
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	wantRefusedAndKept(t, path, path, content, 0o600, "owned by uid 65534")
}

func TestKeyringTooLargeIsDamaged(t *testing.T) {
	path, content := keyringIn(t)
	big := append(bytes.Repeat([]byte("#\n"), maxKeyringSize/2), content...)
	if err := os.WriteFile(path, big, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenOrCreateKeyring(path, nil); !errors.Is(err, ErrDamaged) {
		t.Fatalf("err = %v, want ErrDamaged", err)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, big) {
		t.Fatal("oversized keyring was modified")
	}
}
