package identity

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/servald/servald/internal/safefs"
)

// KeyringFile is the keyring's file name inside an instance directory.
const KeyringFile = "keyring"

const keyringHeader = "# servald keyring v1: private keys, keep this file secret (mode 0600)\n"

// ErrDamaged is returned (wrapped) when a keyring file exists but cannot be
// trusted. The file is left exactly as it was.
var ErrDamaged = errors.New("keyring is damaged")

// Keyring is the set of identities stored in one file. The first is the
// node's primary identity.
type Keyring struct {
	path string
	ids  []*Identity
}

// Path returns the keyring's file path.
func (k *Keyring) Path() string { return k.path }

// Identities returns the identities in file order.
func (k *Keyring) Identities() []*Identity { return append([]*Identity(nil), k.ids...) }

// Primary returns the first identity: the one a node runs as.
func (k *Keyring) Primary() *Identity { return k.ids[0] }

// maxKeyringSize bounds what is read of a keyring file: far more than any
// real keyring (about 200 bytes an identity); a larger file is damaged.
const maxKeyringSize = 1 << 20

// OpenKeyring reads an existing keyring. A missing file gives an error that
// satisfies errors.Is(err, fs.ErrNotExist); a damaged one ErrDamaged; one
// that others could have read or planted (a symbolic link, another owner,
// any group/other permission bit) safefs.ErrUnsafe, with the fix in its
// message. The file is left exactly as it was in every case.
func OpenKeyring(path string) (*Keyring, error) {
	f, err := safefs.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("identity: keyring: %w", err)
	}
	defer f.Close()
	if err := safefs.CheckPrivate(f); err != nil {
		return nil, fmt.Errorf("identity: keyring: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyringSize+1))
	if err != nil {
		return nil, fmt.Errorf("identity: read keyring: %w", err)
	}
	if len(b) > maxKeyringSize {
		return nil, fmt.Errorf("identity: %s: %w: larger than %d bytes", path, ErrDamaged, maxKeyringSize)
	}
	ids, err := parseKeyring(b)
	if err != nil {
		return nil, fmt.Errorf("identity: %s: %w", path, err)
	}
	return &Keyring{path: path, ids: ids}, nil
}

// OpenOrCreateKeyring opens the keyring at path, or creates it (mode 0600,
// its directory 0700) holding one new identity when no file is there. An
// existing file (or symbolic link) is never replaced, even when it is
// damaged or unsafe: OpenKeyring's error is returned.
func OpenOrCreateKeyring(path string, rand io.Reader) (*Keyring, error) {
	k, err := OpenKeyring(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	id, err := Generate(rand)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("identity: create keyring directory: %w", err)
	}
	err = writeNew(path, []*Identity{id}, false)
	if errors.Is(err, fs.ErrExist) { // created meanwhile by another process
		return OpenKeyring(path)
	}
	if err != nil {
		return nil, err
	}
	return &Keyring{path: path, ids: []*Identity{id}}, nil
}

// Add appends a new identity. The file is replaced atomically by one holding
// every identity it held before plus the new one; if the file changed on
// disk since it was read, nothing is written.
func (k *Keyring) Add(rand io.Reader) (*Identity, error) {
	onDisk, err := OpenKeyring(k.path)
	if err != nil {
		return nil, err
	}
	if !sameIDs(onDisk.ids, k.ids) {
		return nil, fmt.Errorf("identity: keyring %s changed since it was read; try again", k.path)
	}
	id, err := Generate(rand)
	if err != nil {
		return nil, err
	}
	ids := append(k.Identities(), id)
	if err := writeNew(k.path, ids, true); err != nil {
		return nil, err
	}
	k.ids = ids
	return id, nil
}

func sameIDs(a, b []*Identity) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].SID() != b[i].SID() {
			return false
		}
	}
	return true
}

// writeNew writes ids to a temporary file beside path, syncs it, and then
// links it into place (replace=false: fails with fs.ErrExist if path exists)
// or renames it over path (replace=true).
func writeNew(path string, ids []*Identity, replace bool) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".keyring-*")
	if err != nil {
		return fmt.Errorf("identity: write keyring: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(formatKeyring(ids))
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && replace {
		err = os.Rename(tmp, path)
	} else if err == nil {
		err = os.Link(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("identity: write keyring: %w", err)
	}
	return nil
}

func formatKeyring(ids []*Identity) []byte {
	var b bytes.Buffer
	b.WriteString(keyringHeader)
	for _, id := range ids {
		fmt.Fprintf(&b, "ed25519 %s %s\n", strings.ToUpper(hex.EncodeToString(id.Seed())), id.SID())
	}
	return b.Bytes()
}

// parseKeyring reads the text format: comment lines starting with '#', and
// one "ed25519 SEEDHEX SID" line per identity. The SID must be the one the
// seed makes, so a flipped bit anywhere is caught.
func parseKeyring(b []byte) ([]*Identity, error) {
	var ids []*Identity
	seen := map[SID]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		f := strings.Fields(t)
		if len(f) != 3 || f[0] != "ed25519" {
			return nil, fmt.Errorf("%w: line %d: want \"ed25519 SEED SID\"", ErrDamaged, line)
		}
		seed, err := hex.DecodeString(f[1])
		if err != nil || len(seed) != SeedLen {
			return nil, fmt.Errorf("%w: line %d: bad private seed", ErrDamaged, line)
		}
		sid, err := ParseSID(f[2])
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: bad SID", ErrDamaged, line)
		}
		id, _ := FromSeed(seed)
		if id.SID() != sid {
			return nil, fmt.Errorf("%w: line %d: SID does not match its private key", ErrDamaged, line)
		}
		if seen[sid] {
			return nil, fmt.Errorf("%w: line %d: duplicate identity %s", ErrDamaged, line, sid.Short())
		}
		seen[sid] = true
		ids = append(ids, id)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDamaged, err)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: it holds no identity", ErrDamaged)
	}
	return ids, nil
}
