package safefs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// otherUID is the uid files are given to show an owner mismatch.
const otherUID = 65534

// chownOther gives path to another user, or skips when not root.
func chownOther(t *testing.T, path string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("owner mismatch needs root to chown a file to another uid; not root, skipped")
	}
	if err := os.Lchown(path, otherUID, otherUID); err != nil {
		t.Fatal(err)
	}
}

func wantUnsafe(t *testing.T, err error, parts ...string) {
	t.Helper()
	if !errors.Is(err, ErrUnsafe) {
		t.Fatalf("err = %v, want an ErrUnsafe refusal", err)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("refusal spans lines: %q", msg)
	}
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			t.Errorf("refusal %q lacks %q", msg, p)
		}
	}
}

func TestCheckDir(t *testing.T) {
	for _, tc := range []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o700, true}, {0o755, true}, {0o711, true},
		{0o777, false}, {0o770, false}, {0o702, false}, {0o1777, false},
	} {
		dir := filepath.Join(t.TempDir(), "inst")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, tc.mode); err != nil {
			t.Fatal(err)
		}
		err := CheckDir(dir)
		if tc.ok {
			if err != nil {
				t.Errorf("mode %v: %v", tc.mode, err)
			}
			continue
		}
		wantUnsafe(t, err, dir, "writable by group/others", "run chmod 700 "+dir)
	}
	if err := CheckDir(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing dir: %v", err)
	}
	f := filepath.Join(t.TempDir(), "f")
	os.WriteFile(f, nil, 0o600)
	wantUnsafe(t, CheckDir(f), "not a directory")
}

func TestCheckDirExactLine(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "x")
	os.Mkdir(dir, 0o700)
	os.Chmod(dir, 0o777)
	err := CheckDir(dir)
	want := "safefs: directory " + dir + " is writable by group/others (mode 0777): run chmod 700 " + dir
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant  %s", err, want)
	}
	var ue *UnsafeError
	if !errors.As(fmt.Errorf("wrapped: %w", err), &ue) {
		t.Fatal("not an *UnsafeError")
	}
	want = "instance directory " + dir + " is writable by group/others (mode 0777): run chmod 700 " + dir
	if got := ue.Describe("instance directory"); got != want {
		t.Fatalf("Describe = %s\nwant       %s", got, want)
	}
}

func TestCheckDirOwner(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "inst")
	os.Mkdir(dir, 0o700)
	chownOther(t, dir)
	wantUnsafe(t, CheckDir(dir), dir, "owned by uid 65534")
}

func TestCheckPrivateFile(t *testing.T) {
	for _, tc := range []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o600, true}, {0o400, true},
		{0o644, false}, {0o640, false}, {0o604, false}, {0o666, false}, {0o610, false},
	} {
		path := filepath.Join(t.TempDir(), "keyring")
		if err := os.WriteFile(path, []byte("secret"), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chmod(path, tc.mode)
		for name, err := range map[string]error{"path": CheckPrivateFile(path), "open": openCheck(path)} {
			if tc.ok {
				if err != nil {
					t.Errorf("%s, mode %v: %v", name, tc.mode, err)
				}
				continue
			}
			wantUnsafe(t, err, path, "group/others", "run chmod 600 "+path)
		}
	}
}

// openCheck opens path with OpenFile and checks it with CheckPrivate.
func openCheck(path string) error {
	f, err := OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return CheckPrivate(f)
}

func TestPrivateFileOwner(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyring")
	os.WriteFile(path, []byte("secret"), 0o600)
	chownOther(t, path)
	wantUnsafe(t, CheckPrivateFile(path), "owned by uid 65534")
	f, err := OpenFile(path, os.O_RDWR, 0)
	if err == nil {
		f.Close()
	}
	wantUnsafe(t, err, "owned by uid 65534")
}

// TestSymlinkRefused plants a link where our file belongs: every entry
// point refuses it, naming it, and the target is left as it was.
func TestSymlinkRefused(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "precious")
	const content = "do not touch\n"
	if err := os.WriteFile(target, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "servald.pid")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []int{os.O_RDONLY, os.O_RDWR | os.O_CREATE, os.O_WRONLY | os.O_APPEND | os.O_CREATE} {
		f, err := OpenFile(link, flag, 0o600)
		if err == nil {
			f.Write([]byte("x"))
			f.Close()
		}
		wantUnsafe(t, err, link, "symbolic link")
	}
	wantUnsafe(t, CheckPrivateFile(link), link, "symbolic link")
	// A dangling link is refused too, and nothing is created at its target.
	dangling := filepath.Join(dir, "new")
	os.Symlink(filepath.Join(dir, "created-by-follow"), dangling)
	if f, err := OpenFile(dangling, os.O_RDWR|os.O_CREATE, 0o600); err == nil {
		f.Close()
		t.Error("dangling link opened")
	}
	if _, err := os.Lstat(filepath.Join(dir, "created-by-follow")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("opening a dangling link created its target")
	}
	b, _ := os.ReadFile(target)
	fi, _ := os.Stat(target)
	if string(b) != content || fi.Mode().Perm() != 0o600 {
		t.Fatalf("target changed: %q, mode %v", b, fi.Mode())
	}
}

func TestOpenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if _, err := OpenFile(path, os.O_RDONLY, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	f, err := OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("abc"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("created with mode %v", fi.Mode())
	}
	if _, err := OpenFile(path, os.O_RDWR|os.O_TRUNC, 0); err == nil {
		t.Error("O_TRUNC accepted")
	}
	if b, _ := os.ReadFile(path); string(b) != "abc" {
		t.Errorf("content %q", b)
	}
	// A FIFO planted in our place neither blocks the open nor is accepted.
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = OpenFile(fifo, os.O_RDONLY, 0)
	wantUnsafe(t, err, "not a regular file")
	_, err = OpenFile(dir, os.O_RDONLY, 0)
	wantUnsafe(t, err, "not a regular file")
}
