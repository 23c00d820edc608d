package logfile

import (
	"fmt"
	"os"
	"sync"

	"github.com/servald/servald/internal/safefs"
)

// DefaultMaxSize is the size cap of a daemon's log: 10 MiB.
const DefaultMaxSize = 10 << 20

// File is an append-only log file that rotates at a size cap. Writes are
// safe for concurrent use. Other processes may append to the same file
// (O_APPEND); the size it rotates at is then approximate.
type File struct {
	path string
	max  int64

	mu     sync.Mutex
	f      *os.File // guarded by mu; nil after Close
	size   int64    // bytes in f as far as we know; guarded by mu
	closed bool     // guarded by mu
}

// Open opens (creating it 0600) the log at path for appending, after
// rotating it if it holds maxSize bytes or more already. A symbolic link,
// or a file that is not regular or not ours, at path is refused
// (safefs.ErrUnsafe) and left untouched. maxSize <= 0 means
// DefaultMaxSize.
func Open(path string, maxSize int64) (*File, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	l := &File{path: path, max: maxSize}
	if err := l.open(); err != nil {
		return nil, err
	}
	if l.size >= l.max {
		if err := l.rotate(); err != nil {
			l.f.Close()
			return nil, err
		}
	}
	return l, nil
}

// open opens path for appending and learns its size; l.mu held or l not
// shared yet.
func (l *File) open() error {
	f, err := safefs.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("logfile: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("logfile: %w", err)
	}
	l.f, l.size = f, fi.Size()
	return nil
}

// rotate renames the log to path.1 (replacing an older one; a symbolic
// link there is replaced, not followed) and opens a new one. If another
// process has rotated it already, only the new file is opened. l.mu held.
func (l *File) rotate() error {
	if cur, err := l.f.Stat(); err == nil {
		if fi, err := os.Lstat(l.path); err == nil && os.SameFile(cur, fi) {
			if err := os.Rename(l.path, l.path+".1"); err != nil {
				return fmt.Errorf("logfile: rotate: %w", err)
			}
		}
	}
	old := l.f
	if err := l.open(); err != nil {
		l.f = old // keep writing to the rotated file rather than losing logs
		return err
	}
	old.Close()
	return nil
}

// Write appends p, first rotating the log if p would take it past the
// cap. A record larger than the cap is written whole into a fresh file.
func (l *File) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, fmt.Errorf("logfile: %w", os.ErrClosed)
	}
	if l.size > 0 && l.size+int64(len(p)) > l.max {
		if err := l.rotate(); err != nil {
			return 0, err
		}
	}
	n, err := l.f.Write(p)
	l.size += int64(n)
	if err != nil {
		return n, fmt.Errorf("logfile: %w", err)
	}
	return n, nil
}

// File returns the file currently written, for handing to a child
// process as its stderr. The child's writes are not counted toward the cap
// until the next Open; rotation by this File does not move the child.
func (l *File) File() *os.File {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f
}

// Size returns the size of the file currently written, as far as this
// File knows (at Open: the file's size). A caller that hands File() to a
// child can read what the child wrote from this offset on.
func (l *File) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size
}

// Path returns the log's path.
func (l *File) Path() string { return l.path }

// Close closes the file. It is idempotent; later writes fail.
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	err := l.f.Close()
	l.f = nil
	if err != nil {
		return fmt.Errorf("logfile: %w", err)
	}
	return nil
}
