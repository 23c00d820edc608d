package seal

import (
	"bytes"
	"errors"
	"testing"

	"github.com/servald/servald/identity"
)

// fixedID returns a deterministic identity, so fuzz corpora stay valid.
func fixedID(t testing.TB, b byte) *identity.Identity {
	t.Helper()
	id, err := identity.FromSeed(bytes.Repeat([]byte{b}, identity.SeedLen))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func FuzzParseInit(f *testing.F) {
	a, b := fixedID(f, 1), fixedID(f, 2)
	for _, params := range [][]byte{nil, []byte("port=5000"), make([]byte, MaxParams)} {
		ini, err := NewInitiator(a, b.SID(), 7, params, t0)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(ini.Message())
	}
	f.Add([]byte{TypeInit, Version})
	f.Fuzz(func(t *testing.T, msg []byte) {
		if m, err := parseInitMsg(msg); err == nil {
			if !bytes.Equal(m.append(nil), msg) {
				t.Fatalf("INIT does not re-encode to its own bytes")
			}
		}
		in, err := ParseInit(msg, b, t0)
		if err != nil {
			return
		}
		if in.Peer() != a.SID() || in.Hash() != HashInit(msg) {
			t.Fatalf("accepted INIT from %v", in.Peer().Short())
		}
		if _, _, err := in.Accept(1, nil); err != nil && !errors.Is(err, ErrAuth) {
			t.Fatalf("Accept: %v", err)
		}
	})
}

// cloneInitiator gives each fuzz input a fresh, unfinished copy.
func cloneInitiator(i *Initiator) *Initiator {
	return &Initiator{peer: i.peer, index: i.index, msg: i.msg, initHash: i.initHash, eph: i.eph}
}

// FuzzFinish covers the RESPONSE and REFUSE parsers, alone and through
// Initiator.Finish.
func FuzzFinish(f *testing.F) {
	a, b := fixedID(f, 1), fixedID(f, 2)
	ini, err := NewInitiator(a, b.SID(), 7, nil, t0)
	if err != nil {
		f.Fatal(err)
	}
	in, err := ParseInit(ini.Message(), b, t0)
	if err != nil {
		f.Fatal(err)
	}
	_, resp, err := in.Accept(9, []byte("params"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(resp)
	f.Add(in.Refuse(RefuseNotAllowed, "not allowed here"))
	f.Add(in.Refuse(RefuseBusy, ""))
	f.Add([]byte{TypeRefuse, 0, 0, 0, 7, 1, 0})
	f.Fuzz(func(t *testing.T, msg []byte) {
		if m, err := parseResponseMsg(msg); err == nil && !bytes.Equal(m.append(nil), msg) {
			t.Fatal("RESPONSE does not re-encode to its own bytes")
		}
		if m, err := parseRefuseMsg(msg); err == nil && !bytes.Equal(m.append(nil), msg) {
			t.Fatal("REFUSE does not re-encode to its own bytes")
		}
		s, err := cloneInitiator(ini).Finish(msg)
		if err == nil {
			if !bytes.Equal(msg, resp) || s.Peer() != b.SID() {
				t.Fatal("Finish accepted a RESPONSE the responder did not make")
			}
			return
		}
		if errors.Is(err, ErrRefused) && (len(msg) == 0 || msg[0] != TypeRefuse) {
			t.Fatalf("refusal from a non-REFUSE: %v", err)
		}
	})
}

// FuzzOpen covers PacketType, ReceiverIndex and Session.Open.
func FuzzOpen(f *testing.F) {
	a, b := fixedID(f, 1), fixedID(f, 2)
	p := handshake(f, a, b, 5, 6)
	var sealed [][]byte
	for _, pt := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("data"), 300)} {
		pkt := mustSeal(f, p.si, pt)
		sealed = append(sealed, pkt)
		f.Add(pkt)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		typ, terr := PacketType(pkt)
		idx, ierr := ReceiverIndex(pkt)
		got, err := p.sr.Open(nil, pkt)
		if err != nil {
			return
		}
		if terr != nil || typ != TypeData || ierr != nil || idx != p.sr.LocalIndex() {
			t.Fatalf("Open accepted a packet of type %d (%v), index %x (%v)", typ, terr, idx, ierr)
		}
		for _, s := range sealed {
			if bytes.Equal(s, pkt) {
				if len(got) != len(pkt)-Overhead {
					t.Fatalf("plaintext of %d bytes from a %d-byte packet", len(got), len(pkt))
				}
				return
			}
		}
		t.Fatal("Open accepted a packet the sender did not seal")
	})
}
