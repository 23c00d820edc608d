package socks

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxAuthFile bounds the size of an auth file.
const maxAuthFile = 1 << 20

// Auth holds the users and passwords a Server accepts (RFC 1929). Passwords
// are kept as SHA-256 digests and compared in constant time.
type Auth struct {
	users map[string][sha256.Size]byte
}

// ParseAuth reads an auth file: one "user:password" per line (see the
// package documentation). It is an error if no user is given, a user
// appears twice, or a line is malformed; the error names the line.
func ParseAuth(r io.Reader) (*Auth, error) {
	a := &Auth{users: make(map[string][sha256.Size]byte)}
	sc := bufio.NewScanner(io.LimitReader(r, maxAuthFile))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text() // without its "\n" or "\r\n"
		if trimmed := strings.TrimSpace(line); trimmed == "" || trimmed[0] == '#' {
			continue
		}
		user, pass, ok := strings.Cut(line, ":")
		switch {
		case !ok:
			return nil, fmt.Errorf("socks: auth line %d: want user:password", n)
		case len(user) < 1 || len(user) > 255 || len(pass) < 1 || len(pass) > 255:
			return nil, fmt.Errorf("socks: auth line %d: user and password must each be 1-255 bytes", n)
		}
		if _, dup := a.users[user]; dup {
			return nil, fmt.Errorf("socks: auth line %d: user %q given twice", n, user)
		}
		a.users[user] = sha256.Sum256([]byte(pass))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("socks: auth file: %w", err)
	}
	if len(a.users) == 0 {
		return nil, fmt.Errorf("socks: auth file names no user")
	}
	return a, nil
}

// LoadAuth reads the auth file at path with ParseAuth.
func LoadAuth(path string) (*Auth, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("socks: %w", err)
	}
	defer f.Close()
	a, err := ParseAuth(f)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return a, nil
}

// Len returns the number of users.
func (a *Auth) Len() int { return len(a.users) }

// Check reports whether pass is user's password.
func (a *Auth) Check(user, pass string) bool {
	want, known := a.users[user]
	got := sha256.Sum256([]byte(pass))
	return subtle.ConstantTimeCompare(want[:], got[:]) == 1 && known
}
