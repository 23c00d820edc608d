package identity

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSID(t *testing.T) {
	id, err := Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	s := id.SID().String()
	if len(s) != 64 || strings.ToUpper(s) != s {
		t.Fatalf("String() = %q, want 64 upper-case hex digits", s)
	}
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{s, true},
		{strings.ToLower(s), true},
		{s[:63], false},
		{s + "0", false},
		{"Z" + s[1:], false},
		{"", false},
	} {
		got, err := ParseSID(tc.in)
		if tc.ok != (err == nil) {
			t.Errorf("ParseSID(%q) err = %v, want ok=%v", tc.in, err, tc.ok)
		}
		if tc.ok && got != id.SID() {
			t.Errorf("ParseSID(%q) = %v", tc.in, got)
		}
		if !tc.ok && !errors.Is(err, ErrMalformedSID) {
			t.Errorf("ParseSID(%q) err %v is not ErrMalformedSID", tc.in, err)
		}
	}
	var back SID
	txt, _ := id.SID().MarshalText()
	if err := back.UnmarshalText(txt); err != nil || back != id.SID() {
		t.Fatalf("text round trip: %v %v", back, err)
	}
}

func TestResolvePrefix(t *testing.T) {
	mk := func(h string) SID {
		s, err := ParseSID(h + strings.Repeat("0", 64-len(h)))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b, c := mk("ABCDEF0011"), mk("ABCDEF0022"), mk("12345678")
	known := []SID{a, b, c, a} // a repeat is one node
	for _, tc := range []struct {
		in      string
		want    SID
		errWant string
		errIs   error
	}{
		{"12345678", c, "", nil},
		{"abcdef0011", a, "", nil},
		{"AbCdEf001", a, "", nil},
		{a.String(), a, "", nil},
		{strings.ToLower(b.String()), b, "", nil},
		{"ABCDEF00", SID{}, "ambiguous SID prefix ABCDEF00 matches 2 nodes", ErrAmbiguousSID},
		{"ABCDEF0", SID{}, "at least 8", ErrMalformedSID},
		{"", SID{}, "at least 8", ErrMalformedSID},
		{"99999999", SID{}, "unknown SID prefix 99999999: no known node has it", ErrUnknownSID},
		{"XYZXYZXY", SID{}, "not hex", ErrMalformedSID},
		{"12345678Z", SID{}, "not hex", ErrMalformedSID}, // odd length, last digit bad
		{a.String() + "0", SID{}, "64 hex digits", ErrMalformedSID},
	} {
		got, err := Resolve(tc.in, known)
		if tc.errWant == "" {
			if err != nil || got != tc.want {
				t.Errorf("Resolve(%q) = %v, %v", tc.in, got, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.errWant) || !errors.Is(err, tc.errIs) {
			t.Errorf("Resolve(%q) err = %v, want %v containing %q", tc.in, err, tc.errIs, tc.errWant)
		}
	}
	_, err := Resolve("ABCDEF00", known)
	if !strings.Contains(err.Error(), a.String()) || !strings.Contains(err.Error(), b.String()) || strings.Contains(err.Error(), c.String()) {
		t.Errorf("ambiguous error does not list exactly the candidates: %v", err)
	}
	_, err = Resolve("99999999", known)
	for _, k := range []SID{a, b, c} {
		if !strings.Contains(err.Error(), k.String()) {
			t.Errorf("unknown-prefix error does not list known node %s: %v", k, err)
		}
	}
	if strings.Count(err.Error(), a.String()) != 1 {
		t.Errorf("unknown-prefix error lists a repeated node twice: %v", err)
	}
	_, err = Resolve("99999999", nil)
	if err == nil || !strings.Contains(err.Error(), "no node is known") {
		t.Errorf("unknown prefix with nothing known: %v", err)
	}
	// Many known nodes: the list is cut.
	var many []SID
	for i := 0; i < 20; i++ {
		many = append(many, mk(fmt.Sprintf("AA%02d", i)))
	}
	_, err = Resolve("99999999", many)
	if err == nil || !strings.Contains(err.Error(), "20 known") || strings.Count(err.Error(), "AA") != maxCandidates {
		t.Errorf("unknown prefix among 20: %v", err)
	}
}

func TestMatch(t *testing.T) {
	x, _ := Generate(nil)
	y, _ := Generate(nil)
	if got := Match(x.SID().String()[:10], []SID{y.SID(), x.SID()}); len(got) != 1 || got[0] != x.SID() {
		t.Fatalf("Match = %v", got)
	}
	if got := Match("", []SID{y.SID(), x.SID(), y.SID()}); len(got) != 2 {
		t.Fatalf("Match(\"\") = %v, want the two distinct SIDs", got)
	}
}

func TestSignVerify(t *testing.T) {
	a, _ := Generate(nil)
	b, _ := Generate(nil)
	msg := []byte("hello")
	sig := a.Sign(msg)
	if !Verify(a.SID(), msg, sig) {
		t.Fatal("own signature rejected")
	}
	if Verify(b.SID(), msg, sig) {
		t.Fatal("signature accepted for another SID")
	}
	if Verify(a.SID(), []byte("hellO"), sig) || Verify(a.SID(), msg, sig[:10]) {
		t.Fatal("bad message or short signature accepted")
	}
}

func TestKeyringCreateOpenAdd(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "inst")
	path := filepath.Join(dir, KeyringFile)
	k, err := OpenOrCreateKeyring(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("keyring mode %v, want 0600", st.Mode().Perm())
	}
	k2, err := OpenOrCreateKeyring(path, nil)
	if err != nil || k2.Primary().SID() != k.Primary().SID() {
		t.Fatalf("reopen gave %v, %v; want the same identity", k2, err)
	}
	id2, err := k.Add(nil)
	if err != nil {
		t.Fatal(err)
	}
	k3, err := OpenKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := k3.Identities(); len(got) != 2 || got[0].SID() != k.Primary().SID() || got[1].SID() != id2.SID() {
		t.Fatalf("after Add: %d identities", len(got))
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode after Add %v", st.Mode().Perm())
	}
	// A stale Keyring must not clobber a newer file.
	if _, err := k2.Add(nil); err == nil {
		t.Fatal("Add on a stale keyring succeeded")
	}
	if k4, _ := OpenKeyring(path); len(k4.Identities()) != 2 {
		t.Fatal("stale Add changed the file")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}

func TestKeyringDamagedIsKept(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, KeyringFile)
	k, err := OpenOrCreateKeyring(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(path)
	seedHex := strings.Fields(strings.Split(string(good), "\n")[1])[1]
	flipped := strings.Replace(string(good), seedHex, "0"+seedHex[1:], 1)
	if flipped == string(good) {
		flipped = strings.Replace(string(good), seedHex, "1"+seedHex[1:], 1)
	}
	cases := map[string][]byte{
		"flipped seed": []byte(flipped),
		"truncated":    good[:len(good)-20],
		"empty":        {},
		"garbage":      []byte("\x00\x01not a keyring\n"),
		"only comment": []byte(keyringHeader),
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := OpenOrCreateKeyring(path, nil)
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("err = %v, want ErrDamaged", err)
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(after, content) {
				t.Fatal("damaged keyring was modified")
			}
		})
	}
	_ = k
	if _, err := OpenKeyring(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing keyring err = %v", err)
	}
}

func FuzzResolve(f *testing.F) {
	a, _ := FromSeed(bytes.Repeat([]byte{1}, SeedLen))
	b, _ := FromSeed(bytes.Repeat([]byte{2}, SeedLen))
	known := []SID{a.SID(), b.SID()}
	f.Add(a.SID().String())
	f.Add(a.SID().String()[:8])
	f.Add(strings.ToLower(b.SID().String()[:13]))
	f.Add("ABCDEFG1")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		sid, err := Resolve(s, known)
		if err != nil {
			if !errors.Is(err, ErrMalformedSID) && !errors.Is(err, ErrUnknownSID) && !errors.Is(err, ErrAmbiguousSID) {
				t.Fatalf("Resolve(%q): unclassified error %v", s, err)
			}
			return
		}
		if len(s) < MinPrefix || !strings.HasPrefix(sid.String(), strings.ToUpper(s)) {
			t.Fatalf("Resolve(%q) = %s", s, sid)
		}
		if len(s) < 64 && sid != a.SID() && sid != b.SID() {
			t.Fatalf("Resolve(%q) = %s, not a known node", s, sid)
		}
	})
}
