package logfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/servald/servald/internal/safefs"
)

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func write(t *testing.T, l *File, s string) {
	t.Helper()
	if n, err := l.Write([]byte(s)); err != nil || n != len(s) {
		t.Fatalf("Write = %d, %v", n, err)
	}
}

func TestAppendsAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "servald.log")
	if err := os.WriteFile(path, []byte("from an earlier run\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		before, _ := os.Stat(path)
		l, err := Open(path, 0)
		if err != nil {
			t.Fatal(err)
		}
		if l.Size() != before.Size() {
			t.Fatalf("Size %d after Open, file holds %d", l.Size(), before.Size())
		}
		write(t, l, fmt.Sprintf("run %d\n", i))
		if l.Size() != before.Size()+6 {
			t.Fatalf("Size %d after writing 6 bytes to %d", l.Size(), before.Size())
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := read(t, path), "from an earlier run\nrun 0\nrun 1\nrun 2\n"; got != want {
		t.Fatalf("log = %q, want %q", got, want)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	// A new log is created 0600.
	fresh := filepath.Join(t.TempDir(), "servald.log")
	l, err := Open(fresh, 0)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if fi, _ := os.Stat(fresh); fi.Mode().Perm() != 0o600 {
		t.Errorf("new log mode %v, want 0600", fi.Mode())
	}
	if _, err := l.Write([]byte("x")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestRotatesAtCap(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "servald.log")
	l, err := Open(path, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	line := strings.Repeat("a", 39) + "\n" // 40 bytes
	write(t, l, line)
	write(t, l, line) // 80
	if _, err := os.Stat(path + ".1"); err == nil {
		t.Fatal("rotated below the cap")
	}
	write(t, l, strings.Replace(line, "a", "b", -1)) // 120 > 100: rotate first
	if got := read(t, path+".1"); got != line+line {
		t.Fatalf("rotated file %q", got)
	}
	if got := read(t, path); got != strings.Replace(line, "a", "b", -1) {
		t.Fatalf("new file %q", got)
	}
	// Again: the older .1 is replaced, only one is kept.
	write(t, l, line)
	write(t, l, line)
	if got := read(t, path+".1"); !strings.HasPrefix(got, "bbb") || len(got) != 80 {
		t.Fatalf("second rotation kept %q", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("files: %v", entries)
	}
	// A record larger than the cap goes whole into a fresh file.
	big := strings.Repeat("c", 150)
	write(t, l, big)
	if got := read(t, path); got != big {
		t.Fatalf("big record: file holds %d bytes", len(got))
	}
}

func TestRotatesOnOpenWhenFull(t *testing.T) {
	path := filepath.Join(t.TempDir(), "servald.log")
	os.WriteFile(path, []byte(strings.Repeat("o", 100)), 0o600)
	l, err := Open(path, 100)
	if err != nil {
		t.Fatal(err)
	}
	write(t, l, "new\n")
	l.Close()
	if got := read(t, path); got != "new\n" {
		t.Fatalf("log %q", got)
	}
	if got := read(t, path+".1"); len(got) != 100 {
		t.Fatalf("rotated %d bytes", len(got))
	}
}

// TestSymlinkRefused: a link planted at the log's path is refused and its
// target left as it was; one planted at NAME.1 is replaced, not followed.
func TestSymlinkRefused(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "precious")
	const content = "someone else's file\n"
	os.WriteFile(target, []byte(content), 0o644)
	path := filepath.Join(dir, "servald.log")
	os.Symlink(target, path)
	l, err := Open(path, 0)
	if err == nil {
		l.Write([]byte("overwrite"))
		l.Close()
	}
	if !errors.Is(err, safefs.ErrUnsafe) || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v, want a refusal naming %s", err, path)
	}
	if got := read(t, target); got != content {
		t.Fatalf("target now %q", got)
	}

	path2 := filepath.Join(t.TempDir(), "servald.log")
	if err := os.Symlink(target, path2+".1"); err != nil {
		t.Fatal(err)
	}
	l, err = Open(path2, 10)
	if err != nil {
		t.Fatal(err)
	}
	write(t, l, "0123456789")
	write(t, l, "next") // rotates over the link
	l.Close()
	if got := read(t, target); got != content {
		t.Fatalf("target now %q", got)
	}
	if fi, err := os.Lstat(path2 + ".1"); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf(".1 is %v, %v; want the rotated regular file", fi, err)
	}
}

func TestConcurrentWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "servald.log")
	l, err := Open(path, 1000)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				fmt.Fprintf(l, "g%d line %02d\n", g, i)
			}
		}()
	}
	wg.Wait()
	cur, old := read(t, path), read(t, path+".1")
	if len(cur) > 1000 || len(old) > 1000 {
		t.Fatalf("sizes %d, %d exceed the cap", len(cur), len(old))
	}
	for _, s := range []string{cur, old} {
		for _, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
			if len(line) != len("g0 line 00") {
				t.Fatalf("torn line %q", line)
			}
		}
	}
}
