package seal

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/servald/servald/identity"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func newID(t testing.TB) *identity.Identity {
	t.Helper()
	id, err := identity.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// pair holds both ends of a completed handshake.
type pair struct {
	a, b   *identity.Identity
	ini    *Initiator
	init   *Init
	resp   []byte
	si, sr *Session // initiator's and responder's sessions
}

// handshake runs INIT/RESPONSE between a (initiator, index ia) and b
// (responder, index ib) without confirming the responder's session.
func handshake(t testing.TB, a, b *identity.Identity, ia, ib uint32) *pair {
	t.Helper()
	p := &pair{a: a, b: b}
	var err error
	p.ini, err = NewInitiator(a, b.SID(), ia, []byte("port=5000"), t0)
	if err != nil {
		t.Fatal(err)
	}
	p.init, err = ParseInit(p.ini.Message(), b, t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	p.sr, p.resp, err = p.init.Accept(ib, []byte("ok"))
	if err != nil {
		t.Fatal(err)
	}
	p.si, err = p.ini.Finish(p.resp)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustSeal(t testing.TB, s *Session, pt []byte) []byte {
	t.Helper()
	pkt, err := s.Seal(nil, pt)
	if err != nil {
		t.Fatal(err)
	}
	return pkt
}

func TestHandshakeRoundTrip(t *testing.T) {
	a, b := newID(t), newID(t)
	p := handshake(t, a, b, 0x11111111, 0x22222222)

	if got := p.init.Peer(); got != a.SID() {
		t.Errorf("responder sees peer %v, want %v", got.Short(), a.SID().Short())
	}
	if !bytes.Equal(p.init.Params(), []byte("port=5000")) || !bytes.Equal(p.sr.PeerParams(), []byte("port=5000")) {
		t.Errorf("responder got params %q / %q", p.init.Params(), p.sr.PeerParams())
	}
	if !bytes.Equal(p.si.PeerParams(), []byte("ok")) {
		t.Errorf("initiator got params %q", p.si.PeerParams())
	}
	if !p.init.Time().Equal(t0) {
		t.Errorf("Init.Time = %v, want %v", p.init.Time(), t0)
	}
	for _, c := range []struct {
		name             string
		s                *Session
		peer             identity.SID
		local, remote    uint32
		initiator, confd bool
		response         []byte
	}{
		{"initiator", p.si, b.SID(), 0x11111111, 0x22222222, true, true, nil},
		{"responder", p.sr, a.SID(), 0x22222222, 0x11111111, false, false, p.resp},
	} {
		s := c.s
		if s.Peer() != c.peer || s.LocalIndex() != c.local || s.RemoteIndex() != c.remote ||
			s.IsInitiator() != c.initiator || s.Confirmed() != c.confd || !bytes.Equal(s.Response(), c.response) {
			t.Errorf("%s session: peer %v local %x remote %x initiator %v confirmed %v response %d bytes",
				c.name, s.Peer().Short(), s.LocalIndex(), s.RemoteIndex(), s.IsInitiator(), s.Confirmed(), len(s.Response()))
		}
		if s.InitHash() != HashInit(p.ini.Message()) {
			t.Errorf("%s InitHash differs from HashInit(INIT)", c.name)
		}
	}

	// First DATA from the initiator confirms the responder's session.
	msg := []byte("hello responder")
	got, err := p.sr.Open(nil, mustSeal(t, p.si, msg))
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("responder Open = %q, %v", got, err)
	}
	if !p.sr.Confirmed() {
		t.Fatal("responder session not confirmed after an authentic DATA")
	}
	msg = []byte("hello initiator")
	got, err = p.si.Open(nil, mustSeal(t, p.sr, msg))
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("initiator Open = %q, %v", got, err)
	}
	// Empty plaintext (keepalive) works and costs exactly Overhead.
	pkt := mustSeal(t, p.si, nil)
	if len(pkt) != Overhead {
		t.Fatalf("empty DATA is %d bytes, want %d", len(pkt), Overhead)
	}
	if got, err := p.sr.Open(nil, pkt); err != nil || len(got) != 0 {
		t.Fatalf("empty DATA: %q, %v", got, err)
	}
	if _, err := p.ini.Finish(p.resp); !errors.Is(err, ErrFinished) {
		t.Fatalf("second Finish: %v, want ErrFinished", err)
	}
}

func TestDuplicateInitGetsSameResponse(t *testing.T) {
	a, b := newID(t), newID(t)
	ini, err := NewInitiator(a, b.SID(), 1, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	in, err := ParseInit(ini.Message(), b, t0)
	if err != nil {
		t.Fatal(err)
	}
	sr, resp, err := in.Accept(2, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The RESPONSE was lost; the initiator retransmits the same bytes.
	again := append([]byte(nil), ini.Message()...)
	if HashInit(again) != sr.InitHash() || in.Hash() != sr.InitHash() {
		t.Fatal("retransmitted INIT not recognised by its hash")
	}
	if !bytes.Equal(sr.Response(), resp) {
		t.Fatal("cached Response differs from what Accept returned")
	}
	si, err := ini.Finish(sr.Response())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sr.Open(nil, mustSeal(t, si, []byte("x"))); err != nil {
		t.Fatal(err)
	}
	// A new INIT (new handshake) hashes differently.
	ini2, _ := NewInitiator(a, b.SID(), 1, nil, t0)
	if HashInit(ini2.Message()) == HashInit(ini.Message()) {
		t.Fatal("two INITs with the same hash")
	}
}

// signInit builds an INIT with arbitrary fields, signed by signer.
func signInit(signer *identity.Identity, m initMsg) []byte {
	body := m.appendBody(nil)
	return append(body, signer.Sign(signedMsg(ctxInit, body))...)
}

func TestParseInitRejects(t *testing.T) {
	a, b, c := newID(t), newID(t), newID(t)
	ini, err := NewInitiator(a, b.SID(), 7, []byte("p"), t0)
	if err != nil {
		t.Fatal(err)
	}
	good := ini.Message()
	m, err := parseInitMsg(good)
	if err != nil {
		t.Fatal(err)
	}
	with := func(f func(*initMsg)) initMsg { x := m; f(&x); return x }
	forged := with(func(x *initMsg) {}) // claims to be a, signed by c
	v2 := with(func(x *initMsg) { x.version = 2 })
	big := with(func(x *initMsg) { x.params = make([]byte, MaxParams+1) })
	maxp := with(func(x *initMsg) { x.params = make([]byte, MaxParams) })

	for _, tc := range []struct {
		name string
		msg  []byte
		self *identity.Identity
		now  time.Time
		want error // nil: accepted
	}{
		{"good", good, b, t0, nil},
		{"max params", signInit(a, maxp), b, t0, nil},
		{"skew at the limit, late", good, b, t0.Add(MaxInitSkew), nil},
		{"skew at the limit, early", good, b, t0.Add(-MaxInitSkew), nil},
		{"stale", good, b, t0.Add(MaxInitSkew + time.Millisecond), ErrStale},
		{"from the future", good, b, t0.Add(-MaxInitSkew - time.Millisecond), ErrStale},
		{"for someone else", good, c, t0, ErrMisaddressed},
		{"forged signature", signInit(c, forged), b, t0, ErrAuth},
		{"unknown version", signInit(a, v2), b, t0, ErrVersion},
		{"params too long", signInit(a, big), b, t0, ErrMalformed},
		{"truncated", good[:len(good)-1], b, t0, ErrMalformed},
		{"trailing byte", append(append([]byte(nil), good...), 0), b, t0, ErrMalformed},
		{"empty", nil, b, t0, ErrMalformed},
		{"data type", append([]byte{TypeData}, good[1:]...), b, t0, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := ParseInit(tc.msg, tc.self, tc.now)
			if tc.want == nil {
				if err != nil || in.Peer() != a.SID() {
					t.Fatalf("ParseInit = %v, want accepted from %v", err, a.SID().Short())
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("ParseInit err = %v, want %v", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "seal: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestInitEveryBitFlipRejected(t *testing.T) {
	a, b := newID(t), newID(t)
	ini, err := NewInitiator(a, b.SID(), 7, []byte("params"), t0)
	if err != nil {
		t.Fatal(err)
	}
	good := ini.Message()
	for i := range len(good) * 8 {
		bad := append([]byte(nil), good...)
		bad[i/8] ^= 1 << (i % 8)
		if _, err := ParseInit(bad, b, t0); err == nil {
			t.Fatalf("INIT with bit %d flipped accepted", i)
		}
	}
}

func TestFinishRejectsForgedResponses(t *testing.T) {
	a, b, mallory := newID(t), newID(t), newID(t)
	ini, err := NewInitiator(a, b.SID(), 7, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	in, err := ParseInit(ini.Message(), b, t0)
	if err != nil {
		t.Fatal(err)
	}
	_, good, err := in.Accept(9, []byte("params"))
	if err != nil {
		t.Fatal(err)
	}

	// Every single bit flip is rejected, and is not taken for a refusal.
	for i := range len(good) * 8 {
		bad := append([]byte(nil), good...)
		bad[i/8] ^= 1 << (i % 8)
		if _, err := ini.Finish(bad); err == nil || errors.Is(err, ErrRefused) || errors.Is(err, ErrFinished) {
			t.Fatalf("RESPONSE with bit %d flipped: err = %v", i, err)
		}
	}

	// A RESPONSE by b to another INIT from a with the same index: a
	// correctly signed RESPONSE, but for another handshake.
	ini2, _ := NewInitiator(a, b.SID(), 7, nil, t0)
	in2, err := ParseInit(ini2.Message(), b, t0)
	if err != nil {
		t.Fatal(err)
	}
	_, other, _ := in2.Accept(9, []byte("params"))

	// Mallory answers an INIT addressed to her, re-using a's index, and
	// tries it on a's handshake with b.
	iniM, _ := NewInitiator(a, mallory.SID(), 7, nil, t0)
	inM, err := ParseInit(iniM.Message(), mallory, t0)
	if err != nil {
		t.Fatal(err)
	}
	_, fromMallory, _ := inM.Accept(9, nil)

	// b's RESPONSE with Mallory's signature in place of b's.
	r, _ := parseResponseMsg(good)
	body := good[:r.signedSize]
	copy(r.sig[:], mallory.Sign(signedMsg(ctxResponse, ini.initHash[:], body)))
	resigned := r.append(nil)

	misaddressed := append([]byte(nil), good...)
	misaddressed[4] ^= 1

	for _, tc := range []struct {
		name string
		msg  []byte
		want error
	}{
		{"response to another INIT", other, ErrAuth},
		{"response signed by mallory", fromMallory, ErrAuth},
		{"good response re-signed by mallory", resigned, ErrAuth},
		{"other receiver index", misaddressed, ErrMisaddressed},
		{"truncated", good[:len(good)-1], ErrMalformed},
		{"INIT", ini.Message(), ErrMalformed},
		{"DATA type", append([]byte{TypeData}, good[1:]...), ErrMalformed},
		{"empty", nil, ErrMalformed},
	} {
		if _, err := ini.Finish(tc.msg); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	// After all that, the genuine RESPONSE still completes the handshake.
	if _, err := ini.Finish(good); err != nil {
		t.Fatalf("genuine RESPONSE after forgeries: %v", err)
	}
}

func TestAcceptRejectsLowOrderEphemeral(t *testing.T) {
	a, b := newID(t), newID(t)
	m := initMsg{version: Version, initiator: a.SID(), responder: b.SID(), millis: uint64(t0.UnixMilli())}
	// The all-zero point (and every other low-order point) gives an
	// all-zero shared secret.
	in, err := ParseInit(signInit(a, m), b, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := in.Accept(1, nil); !errors.Is(err, ErrAuth) {
		t.Fatalf("Accept with a zero ephemeral: %v, want ErrAuth", err)
	}
}

func TestRefuse(t *testing.T) {
	a, b, mallory := newID(t), newID(t), newID(t)
	ini, err := NewInitiator(a, b.SID(), 7, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	in, err := ParseInit(ini.Message(), b, t0)
	if err != nil {
		t.Fatal(err)
	}
	good := in.Refuse(RefuseNotAllowed, "not on the\x1b[31m allow list")

	// Mallory's refusal of the same INIT: same bytes, her signature.
	r, _ := parseRefuseMsg(good)
	copy(r.sig[:], mallory.Sign(signedMsg(ctxRefuse, ini.initHash[:], good[:r.signedSize])))
	forged := r.append(nil)
	// b's refusal of an earlier INIT from a, replayed.
	iniOld, _ := NewInitiator(a, b.SID(), 7, nil, t0.Add(-time.Second))
	inOld, _ := ParseInit(iniOld.Message(), b, t0)
	old := inOld.Refuse(RefuseNotAllowed, "not on the\x1b[31m allow list")

	for i := range len(good) * 8 {
		bad := append([]byte(nil), good...)
		bad[i/8] ^= 1 << (i % 8)
		if _, err := ini.Finish(bad); err == nil || errors.Is(err, ErrRefused) {
			t.Fatalf("REFUSE with bit %d flipped: err = %v", i, err)
		}
	}
	for name, msg := range map[string][]byte{"forged by mallory": forged, "replayed from another handshake": old} {
		if _, err := ini.Finish(msg); !errors.Is(err, ErrAuth) {
			t.Errorf("%s: err = %v, want ErrAuth", name, err)
		}
	}

	_, err = ini.Finish(good)
	var re *RefusedError
	if !errors.Is(err, ErrRefused) || !errors.As(err, &re) {
		t.Fatalf("genuine REFUSE: err = %v, want a *RefusedError", err)
	}
	if re.Peer != b.SID() || re.Code != RefuseNotAllowed || re.Reason != "not on the\x1b[31m allow list" {
		t.Fatalf("RefusedError = %+v", re)
	}
	if strings.ContainsRune(err.Error(), '\x1b') || !strings.Contains(err.Error(), "not allowed") {
		t.Fatalf("error text %q: want the code and no raw control characters", err)
	}
	if _, err := ini.Finish(good); !errors.Is(err, ErrFinished) {
		t.Fatalf("Finish after REFUSE: %v, want ErrFinished", err)
	}
}

func TestRefuseReasonLimits(t *testing.T) {
	a, b := newID(t), newID(t)
	for _, tc := range []struct {
		name, in, want string
		code           RefuseCode
	}{
		{"empty", "", "", RefuseUnspecified},
		{"long ascii", strings.Repeat("x", 300), strings.Repeat("x", MaxReason), RefuseBusy},
		{"cut at a rune", strings.Repeat("x", MaxReason-1) + "é", strings.Repeat("x", MaxReason-1), RefuseNoListener},
		{"invalid utf-8", "a\xffb", "a\uFFFDb", RefuseCode(200)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ini, _ := NewInitiator(a, b.SID(), 1, nil, t0)
			in, err := ParseInit(ini.Message(), b, t0)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ini.Finish(in.Refuse(tc.code, tc.in))
			var re *RefusedError
			if !errors.As(err, &re) || re.Reason != tc.want || re.Code != tc.code {
				t.Fatalf("got %v, want reason %q code %d", err, tc.want, tc.code)
			}
		})
	}
	if got := RefuseCode(200).String(); got != "refusal code 200" {
		t.Errorf("unknown code String = %q", got)
	}
}

func TestNewInitiatorRejectsBadInput(t *testing.T) {
	a, b := newID(t), newID(t)
	if _, err := NewInitiator(a, b.SID(), 1, make([]byte, MaxParams+1), t0); err == nil {
		t.Error("oversized params accepted")
	}
	if _, err := NewInitiator(a, b.SID(), 1, nil, time.Unix(-5, 0)); err == nil {
		t.Error("clock before 1970 accepted")
	}
	ini, _ := NewInitiator(a, b.SID(), 1, nil, t0)
	in, _ := ParseInit(ini.Message(), b, t0)
	if _, _, err := in.Accept(2, make([]byte, MaxParams+1)); err == nil {
		t.Error("Accept with oversized params succeeded")
	}
}

func TestFreshEphemeralsGiveIndependentSessions(t *testing.T) {
	a, b := newID(t), newID(t)
	// Same identities, same indices, same params: only the ephemerals differ.
	p1 := handshake(t, a, b, 5, 6)
	p2 := handshake(t, a, b, 5, 6)
	m1, _ := parseInitMsg(p1.ini.Message())
	m2, _ := parseInitMsg(p2.ini.Message())
	r1, _ := parseResponseMsg(p1.resp)
	r2, _ := parseResponseMsg(p2.resp)
	if m1.ephemeral == m2.ephemeral || r1.ephemeral == r2.ephemeral {
		t.Fatal("an ephemeral key was reused across handshakes")
	}
	x1, x2 := mustSeal(t, p1.si, []byte("same")), mustSeal(t, p2.si, []byte("same"))
	if bytes.Equal(x1, x2) {
		t.Fatal("two sessions produced the same ciphertext for the same counter and plaintext")
	}
	if _, err := p2.sr.Open(nil, x1); !errors.Is(err, ErrAuth) {
		t.Fatalf("session 2 opened session 1's packet: %v", err)
	}
	if _, err := p1.sr.Open(nil, x2); !errors.Is(err, ErrAuth) {
		t.Fatalf("session 1 opened session 2's packet: %v", err)
	}
	if _, err := p1.sr.Open(nil, x1); err != nil {
		t.Fatal(err)
	}
}

func TestReplayedInitCannotReplaceSession(t *testing.T) {
	a, b := newID(t), newID(t)
	p := handshake(t, a, b, 5, 6)
	if _, err := p.sr.Open(nil, mustSeal(t, p.si, []byte("confirm"))); err != nil || !p.sr.Confirmed() {
		t.Fatalf("confirm: %v", err)
	}
	// An attacker replays a's INIT within the freshness window. It verifies
	// (it is a's), so b accepts it into a pending session...
	in, err := ParseInit(p.ini.Message(), b, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	pending, _, err := in.Accept(8, nil)
	if err != nil {
		t.Fatal(err)
	}
	// ...which nothing but a fresh initiator key can confirm: a's traffic
	// (on the real session) does not open on it, even with the index
	// rewritten.
	for range 3 {
		pkt := mustSeal(t, p.si, []byte("traffic"))
		if _, err := pending.Open(nil, pkt); !errors.Is(err, ErrMisaddressed) {
			t.Fatalf("pending Open: %v, want ErrMisaddressed", err)
		}
		be.PutUint32(pkt[1:], pending.LocalIndex())
		if _, err := pending.Open(nil, pkt); !errors.Is(err, ErrAuth) {
			t.Fatalf("pending Open with rewritten index: %v, want ErrAuth", err)
		}
	}
	if pending.Confirmed() {
		t.Fatal("replayed INIT produced a confirmed session")
	}
	if _, err := p.sr.Open(nil, mustSeal(t, p.si, []byte("still alive"))); err != nil {
		t.Fatalf("established session broken: %v", err)
	}
}
