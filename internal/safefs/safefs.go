package safefs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// ErrUnsafe is matched (errors.Is) by every refusal of this package.
var ErrUnsafe = errors.New("unsafe file")

// UnsafeError is a refusal: what is wrong with Path and how to fix it.
// Callers that name the file's role ("instance directory", "keyring") can
// build their own line from the fields.
type UnsafeError struct {
	Kind    string // "directory" or "file"
	Path    string
	Problem string // e.g. "is writable by group/others (mode 0777)"
	Fix     string // e.g. "run chmod 700 /x"
}

func (e *UnsafeError) Error() string {
	return fmt.Sprintf("safefs: %s %s %s: %s", e.Kind, e.Path, e.Problem, e.Fix)
}

// Describe is the refusal as one line for a user, naming the path by its
// role: Describe("instance directory") gives "instance directory /x is
// writable by group/others (mode 0777): run chmod 700 /x".
func (e *UnsafeError) Describe(role string) string {
	return fmt.Sprintf("%s %s %s: %s", role, e.Path, e.Problem, e.Fix)
}

// Is makes errors.Is(err, ErrUnsafe) true.
func (e *UnsafeError) Is(target error) bool { return target == ErrUnsafe }

// CheckDir refuses a directory (symbolic links followed) that is not
// owned by the effective uid or that group or others may write to.
func CheckDir(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("safefs: %w", err)
	}
	if !fi.IsDir() {
		return &UnsafeError{Kind: "file", Path: path, Problem: "is not a directory", Fix: "remove it or choose another directory"}
	}
	if err := checkOwner(path, fi, "directory"); err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return &UnsafeError{Kind: "directory", Path: path, Problem: fmt.Sprintf("is writable by group/others (mode %04o)", perm), Fix: "run chmod 700 " + path}
	}
	return nil
}

// CheckPrivateFile refuses path unless it is a regular file (not a
// symbolic link) owned by the effective uid with no permission bits for
// group or others.
func CheckPrivateFile(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("safefs: %w", err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return symlinkError(path)
	}
	if err := checkRegularOwned(path, fi); err != nil {
		return err
	}
	return checkPrivateMode(path, fi)
}

// CheckPrivate is CheckPrivateFile for a file already open (by OpenFile):
// it checks what was opened, so the path cannot be swapped in between.
func CheckPrivate(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("safefs: %w", err)
	}
	if err := checkRegularOwned(f.Name(), fi); err != nil {
		return err
	}
	return checkPrivateMode(f.Name(), fi)
}

// OpenFile is os.OpenFile for a file of ours: it does not follow a
// symbolic link in the last component (it refuses it, naming it), does
// not block on a FIFO, and refuses anything but a regular file owned by
// the effective uid. O_TRUNC is refused, since it would act before the
// checks: truncate the file returned instead. A missing file (without
// O_CREATE) gives an error satisfying errors.Is(err, fs.ErrNotExist).
func OpenFile(path string, flag int, perm os.FileMode) (*os.File, error) {
	if flag&os.O_TRUNC != 0 {
		return nil, fmt.Errorf("safefs: open %s: O_TRUNC is not allowed; truncate after the checks", path)
	}
	fd, err := openNoFollow(path, flag, perm)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.EMLINK) {
			if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
				return nil, symlinkError(path)
			}
		}
		return nil, fmt.Errorf("safefs: %w", &os.PathError{Op: "open", Path: path, Err: err})
	}
	f := os.NewFile(uintptr(fd), path)
	fi, err := f.Stat()
	if err == nil {
		err = checkRegularOwned(path, fi)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// openNoFollow opens path with O_NOFOLLOW and O_NONBLOCK (a FIFO must not
// block the open), then clears O_NONBLOCK.
func openNoFollow(path string, flag int, perm os.FileMode) (int, error) {
	for {
		fd, err := syscall.Open(path, flag|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, uint32(perm.Perm()))
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return -1, err
		}
		if err := syscall.SetNonblock(fd, false); err != nil {
			syscall.Close(fd)
			return -1, err
		}
		return fd, nil
	}
}

func symlinkError(path string) error {
	return &UnsafeError{Kind: "file", Path: path, Problem: "is a symbolic link; refusing to follow it", Fix: "remove it (rm " + path + ") if you did not make it"}
}

func checkRegularOwned(path string, fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return &UnsafeError{Kind: "file", Path: path, Problem: fmt.Sprintf("is not a regular file (%v)", fi.Mode().Type()), Fix: "remove it if you did not make it"}
	}
	return checkOwner(path, fi, "file")
}

func checkOwner(path string, fi fs.FileInfo, what string) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil // no owners on this system
	}
	if euid := os.Geteuid(); int(st.Uid) != euid {
		return &UnsafeError{Kind: what, Path: path, Problem: fmt.Sprintf("is owned by uid %d, not by you (uid %d)", st.Uid, euid), Fix: fmt.Sprintf("use a %s of your own", what)}
	}
	return nil
}

func checkPrivateMode(path string, fi fs.FileInfo) error {
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return &UnsafeError{Kind: "file", Path: path, Problem: fmt.Sprintf("is accessible by group/others (mode %04o)", perm), Fix: "run chmod 600 " + path}
	}
	return nil
}
