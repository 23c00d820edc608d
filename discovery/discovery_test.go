package discovery

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/internal/meshtest"
	"github.com/servald/servald/mesh"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"ssh", true},
		{"my-service_2.v1", true},
		{"A", true},
		{strings.Repeat("x", MaxName), true},
		{"", false},
		{strings.Repeat("x", MaxName+1), false},
		{"with space", false},
		{"new\nline", false},
		{"eq=sign", false},
		{"slash/", false},
		{"ünïcode", false},
		{"nul\x00", false},
	}
	for _, tt := range tests {
		if err := ValidName(tt.name); (err == nil) != tt.ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestQueryRoundTrip(t *testing.T) {
	for _, name := range []string{"", "ssh", "a.b-c_d", strings.Repeat("z", MaxName)} {
		nonce := Nonce{1, 2, 3, 15: 16}
		b := AppendQuery([]byte("pre"), nonce, name)[3:]
		gotNonce, got, err := ParseQuery(b)
		if err != nil || got != name || gotNonce != nonce {
			t.Errorf("ParseQuery(AppendQuery(%q)) = %x %q, %v", name, gotNonce, got, err)
		}
	}
}

func TestQueryRejects(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"no nonce", []byte("Q")},
		{"short nonce", []byte("Q0123456789")},
		{"answer type", []byte("A0123456789abcdefssh")},
		{"lower-case type", []byte("q0123456789abcdefssh")},
		{"name too long", append([]byte("Q0123456789abcdef"), strings.Repeat("x", MaxName+1)...)},
		{"space in name", []byte("Q0123456789abcdefa b")},
		{"newline in name", []byte("Q0123456789abcdefssh\n")},
		{"binary name", []byte("Q0123456789abcdef\xff\x00")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, got, err := ParseQuery(tt.in); !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseQuery = %q, %v; want ErrMalformed", got, err)
			}
		})
	}
}

func TestAnswerRoundTrip(t *testing.T) {
	id, to := testIdentity(t), testIdentity(t).SID()
	nonce := Nonce{7}
	tests := [][]Service{
		nil,
		{{Name: "ssh", Port: 5000}},
		{{Name: "a", Port: 1}, {Name: "http.alt", Port: 65535}, {Name: strings.Repeat("n", MaxName), Port: 11}},
	}
	for _, svcs := range tests {
		b := AppendAnswer(nil, id, to, nonce, svcs)
		got, err := VerifyAnswer(b, id.SID(), to, nonce)
		if err != nil {
			t.Fatalf("VerifyAnswer(%q): %v", b, err)
		}
		if len(got) != len(svcs) || (len(got) > 0 && !reflect.DeepEqual(got, svcs)) {
			t.Fatalf("round trip of %v gave %v", svcs, got)
		}
	}
	if s := (Service{Name: "ssh", Port: 5000}).String(); s != "ssh.mdp.port=5000" {
		t.Fatalf("Service.String() = %q", s)
	}
}

func TestAnswerRejects(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"no separator", "ssh port 5000\n"},
		{"empty name", ".mdp.port=5000\n"},
		{"bad name", "b@d.mdp.port=5000\n"},
		{"port zero", "ssh.mdp.port=0\n"},
		{"port too large", "ssh.mdp.port=65536\n"},
		{"negative port", "ssh.mdp.port=-1\n"},
		{"port not a number", "ssh.mdp.port=ssh\n"},
		{"empty port", "ssh.mdp.port=\n"},
		{"carriage return", "ssh.mdp.port=5000\r\n"},
		{"one bad line among good ones", "ssh.mdp.port=5000\nbad\nhttp.mdp.port=80\n"},
	}
	id, to := testIdentity(t), testIdentity(t).SID()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Signed as it is, so that only the lines are wrong.
			b := append([]byte{typeAnswer}, make([]byte, NonceLen)...)
			b = append(b, id.Sign(signedBytes(id.SID(), to, Nonce{}, []byte(tt.in)))...)
			b = append(b, tt.in...)
			if got, err := VerifyAnswer(b, id.SID(), to, Nonce{}); !errors.Is(err, ErrMalformed) {
				t.Fatalf("VerifyAnswer = %v, %v; want ErrMalformed", got, err)
			}
		})
	}
	for _, short := range [][]byte{nil, []byte("A"), append([]byte("A"), make([]byte, answerOverhead-2)...)} {
		if _, err := VerifyAnswer(short, id.SID(), to, Nonce{}); !errors.Is(err, ErrMalformed) {
			t.Errorf("VerifyAnswer(%d bytes) = %v, want ErrMalformed", len(short), err)
		}
	}
}

func FuzzParseQuery(f *testing.F) {
	f.Add(AppendQuery(nil, Nonce{}, ""))
	f.Add(AppendQuery(nil, Nonce{1}, "ssh"))
	f.Add(AppendQuery(nil, Nonce{2}, strings.Repeat("x", MaxName)))
	f.Add([]byte("Q0123456789abcdefa b"))
	f.Fuzz(func(t *testing.T, b []byte) {
		nonce, name, err := ParseQuery(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if name != "" && ValidName(name) != nil {
			t.Fatalf("accepted invalid name %q", name)
		}
		if again := AppendQuery(nil, nonce, name); string(again) != string(b) {
			t.Fatalf("query does not re-encode to its bytes: %q vs %q", b, again)
		}
	})
}

func FuzzVerifyAnswer(f *testing.F) {
	id, to := testIdentity(f), testIdentity(f).SID()
	f.Add(AppendAnswer(nil, id, to, Nonce{}, nil))
	f.Add(AppendAnswer(nil, id, to, Nonce{}, []Service{{Name: "ssh", Port: 5000}}))
	f.Add(AppendAnswer(nil, id, to, Nonce{}, []Service{{Name: "a", Port: 1}, {Name: "b.c-d_e", Port: 65535}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		svcs, err := VerifyAnswer(b, id.SID(), to, Nonce{})
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBadSignature) {
				t.Fatalf("error wraps neither ErrMalformed nor ErrBadSignature: %v", err)
			}
			return
		}
		for _, s := range svcs {
			if ValidName(s.Name) != nil || s.Port == 0 {
				t.Fatalf("accepted %+v", s)
			}
		}
		// Only what id signed verifies: the services re-encode to the
		// same answer (Ed25519 signatures are deterministic).
		if again := AppendAnswer(nil, id, to, Nonce{}, svcs); len(svcs) > 0 && string(again) != string(b) {
			t.Fatalf("a verified answer is not what id signs for its services: %q", b)
		}
	})
}

// testIdentity is a fresh node identity.
func testIdentity(t testing.TB) *identity.Identity {
	t.Helper()
	id, err := identity.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// meshPair starts two nodes on memnet; a knows b as a peer.
func meshPair(t *testing.T) (a, b *mesh.Node) {
	t.Helper()
	m := meshtest.Pair(t, memnet.LinkConfig{Delay: time.Millisecond}, meshtest.Timers(100*time.Millisecond, 3*time.Second))
	return m.Nodes[0], m.Nodes[1]
}

func responder(t *testing.T, n *mesh.Node, svcs ...Service) *Responder {
	t.Helper()
	pc, err := n.Bind(Port)
	if err != nil {
		t.Fatal(err)
	}
	r := NewResponder(pc, n.Identity(), nil)
	t.Cleanup(func() { r.Close() })
	for _, s := range svcs {
		if err := r.Add(s.Name, s.Port); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// find runs Find from n with a timeout and reports how long it took.
func find(t *testing.T, n *mesh.Node, name string, timeout time.Duration) ([]Answer, time.Duration) {
	t.Helper()
	pc, err := n.Bind(0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	got, err := Find(ctx, pc, n.SID(), n.Routes(), name)
	if err != nil {
		t.Fatalf("Find(%q): %v", name, err)
	}
	return got, time.Since(start)
}

func TestFindAcrossMesh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := meshPair(t)
		responder(t, b, Service{"ssh", 5000})

		// A runs no responder, so Find waits for its own answer until the
		// deadline: keep it short.
		const wait = 500 * time.Millisecond
		got, _ := find(t, a, "ssh", wait)
		want := b.SID().String() + " ssh.mdp.port=5000"
		if len(got) != 1 || got[0].String() != want || got[0].Hops != 1 || got[0].SID != b.SID() {
			t.Fatalf("Find(ssh) = %v, want exactly [%s] at 1 hop", got, want)
		}
		all, _ := find(t, a, "", wait)
		if len(all) != 1 || all[0].String() != want {
			t.Fatalf("Find(\"\") = %v, want [%s]", all, want)
		}
		if none, _ := find(t, a, "nope", wait); len(none) != 0 {
			t.Fatalf("Find(nope) = %v, want none", none)
		}
	})
}

func TestFindNearestFirstAndEarlyReturn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := meshPair(t)
		ra := responder(t, a, Service{"ssh", 22}, Service{"web", 80})
		rb := responder(t, b, Service{"ssh", 5000})

		// Every node answers, so Find returns before its deadline.
		got, took := find(t, a, "ssh", 10*time.Second)
		if took > 5*time.Second {
			t.Errorf("Find took %v though every node answered", took)
		}
		if len(got) != 2 || got[0].SID != a.SID() || got[0].Hops != 0 || got[0].Port != 22 ||
			got[1].SID != b.SID() || got[1].Hops != 1 || got[1].Port != 5000 {
			t.Fatalf("Find(ssh) = %v, want A's ssh (0 hops) then B's (1 hop)", got)
		}
		all, _ := find(t, a, "", 10*time.Second)
		if len(all) != 3 {
			t.Fatalf("Find(\"\") = %v, want 3 services", all)
		}

		if err := ra.Add("bad name", 1); err == nil {
			t.Error("Add accepted an invalid name")
		}
		rb.Remove("ssh")
		ra.Remove("web")
		got, _ = find(t, a, "", 300*time.Millisecond)
		if len(got) != 1 || got[0].SID != a.SID() || got[0].Name != "ssh" {
			t.Fatalf("after Remove: %v, want only A's ssh", got)
		}
		if _, err := Find(context.Background(), nil, a.SID(), nil, "bad name"); err == nil {
			t.Error("Find accepted an invalid name")
		}
	})
}

func TestResponderIgnoresGarbage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := meshPair(t)
		responder(t, b, Service{"ssh", 5000})
		pc, err := a.Bind(0)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		to := mesh.Addr{SID: b.SID(), Port: Port}
		for _, g := range [][]byte{{}, []byte("Q bad"), []byte("Assh.mdp.port=1\n"), make([]byte, 1000)} {
			if _, err := pc.WriteTo(g, to); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := pc.WriteTo(AppendQuery(nil, Nonce{9}, "ssh"), to); err != nil {
			t.Fatal(err)
		}
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 2048)
		k, from, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		svcs, err := VerifyAnswer(buf[:k], b.SID(), a.SID(), Nonce{9})
		if err != nil || from != to || len(svcs) != 1 || svcs[0] != (Service{"ssh", 5000}) {
			t.Fatalf("answer %q from %v (%v)", buf[:k], from, err)
		}
		// Exactly one answer: garbage got none.
		pc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if k, _, err := pc.ReadFrom(buf); err == nil {
			t.Fatalf("a second answer: %q", buf[:k])
		}
	})
}

func TestAdvertiseStandsUntilEveryWithdraw(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := meshPair(t)
		rb := responder(t, b)
		w1, err := rb.Advertise("ssh", 5000)
		if err != nil {
			t.Fatal(err)
		}
		w2, err := rb.Advertise("ssh", 5000) // a second listener, same service
		if err != nil {
			t.Fatal(err)
		}
		w3, err := rb.Advertise("ssh", 5001) // the same name at another port
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rb.Advertise("ssh", 0); err == nil {
			t.Error("Advertise accepted port 0")
		}
		ports := func() []uint16 {
			t.Helper()
			got, _ := find(t, a, "ssh", 500*time.Millisecond)
			var out []uint16
			for _, g := range got {
				if g.SID == b.SID() {
					out = append(out, g.Port)
				}
			}
			return out
		}
		if got := ports(); !reflect.DeepEqual(got, []uint16{5000, 5001}) {
			t.Fatalf("three advertisements: ports %v, want [5000 5001] (each service once)", got)
		}
		w1()
		w1() // a second withdraw of the same advertisement changes nothing
		if got := ports(); !reflect.DeepEqual(got, []uint16{5000, 5001}) {
			t.Fatalf("after one of two withdrawn: ports %v, want [5000 5001]", got)
		}
		w2()
		if got := ports(); !reflect.DeepEqual(got, []uint16{5001}) {
			t.Fatalf("after both withdrawn: ports %v, want [5001]", got)
		}
		w3()
		if got := ports(); len(got) != 0 {
			t.Fatalf("after every withdraw: ports %v", got)
		}
	})
}

// fixedRoom is a port whose path carries max bytes; it is never read.
type fixedRoom struct {
	PacketConn
	max int
}

func (f fixedRoom) MaxPayload(identity.SID) int { return f.max }

func TestAnswerFitsPath(t *testing.T) {
	const room = 200
	id := testIdentity(t)
	r := &Responder{pc: fixedRoom{max: room}, id: id, ads: map[uint64]Service{}}
	for i := 0; i < 50; i++ {
		if _, err := r.Advertise(fmt.Sprintf("service-%02d", i), uint16(1000+i)); err != nil {
			t.Fatal(err)
		}
	}
	b := r.answer("", identity.SID{}, Nonce{})
	if len(b) > room {
		t.Fatalf("answer of %d bytes for a path of %d", len(b), room)
	}
	svcs, err := VerifyAnswer(b, id.SID(), identity.SID{}, Nonce{})
	if err != nil {
		t.Fatal(err)
	}
	if len(svcs) == 0 || svcs[0] != (Service{"service-00", 1000}) {
		t.Fatalf("cut answer %v, want the first services in name order", svcs)
	}
	t.Logf("%d of 50 services fit %d bytes", len(svcs), room)
	// A query for one name still gets it, whatever else is advertised.
	one, err := VerifyAnswer(r.answer("service-49", identity.SID{}, Nonce{}), id.SID(), identity.SID{}, Nonce{})
	if err != nil || len(one) != 1 || one[0] != (Service{"service-49", 1049}) {
		t.Fatalf("answer for service-49: %v %v", one, err)
	}
}
