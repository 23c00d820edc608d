package discovery

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
)

// onPath is an MDP port with an attacker on the path: it sees every query
// Find sends and slips its own answers in before the real ones.
type onPath struct {
	PacketConn
	forge func(nonce Nonce) []forged

	mu     sync.Mutex
	queued []forged
}

type forged struct {
	b    []byte
	from mesh.Addr
}

func (p *onPath) WriteTo(b []byte, addr net.Addr) (int, error) {
	if nonce, _, err := ParseQuery(b); err == nil {
		p.mu.Lock()
		if p.queued == nil {
			p.queued = p.forge(nonce)
		}
		p.mu.Unlock()
	}
	return p.PacketConn.WriteTo(b, addr)
}

func (p *onPath) ReadFrom(b []byte) (int, net.Addr, error) {
	p.mu.Lock()
	if len(p.queued) > 0 {
		f := p.queued[0]
		p.queued = p.queued[1:]
		p.mu.Unlock()
		return copy(b, f.b), f.from, nil
	}
	p.mu.Unlock()
	return p.PacketConn.ReadFrom(b)
}

// TestForgedAnswersIgnored: answers in a real node's name that its key did
// not sign for this query (unsigned, signed by another key, for another
// query), and answers from a node nobody asked, are ignored and counted;
// the real node's answer is the one found. Answers used to be taken on the
// MDP header's word, the first per SID winning, so a neighbour could
// redirect `msp connect --service` to any port.
func TestForgedAnswersIgnored(t *testing.T) {
	a, b := meshPair(t)
	responder(t, a)
	responder(t, b, Service{"ssh", 5000})
	mallory, stranger := testIdentity(t), testIdentity(t)
	bAddr := mesh.Addr{SID: b.SID(), Port: Port}
	evil := []Service{{"ssh", 6666}}
	pc, err := a.Bind(0)
	if err != nil {
		t.Fatal(err)
	}
	p := &onPath{PacketConn: pc, forge: func(nonce Nonce) []forged {
		unsigned := append([]byte{typeAnswer}, nonce[:]...)
		unsigned = append(unsigned, make([]byte, identity.SignatureLen)...)
		unsigned = append(unsigned, "ssh.mdp.port=6666\n"...)
		return []forged{
			{unsigned, bAddr},
			{AppendAnswer(nil, mallory, a.SID(), nonce, evil), bAddr},                                       // another key
			{AppendAnswer(nil, stranger, a.SID(), nonce, evil), mesh.Addr{SID: stranger.SID(), Port: Port}}, // not asked
			{[]byte("Assh.mdp.port=6666\n"), bAddr},                                                         // the old, unsigned format
		}
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	got, ign, err := FindCounting(ctx, p, a.SID(), a.Routes(), "ssh")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].SID != b.SID() || got[0].Port != 5000 {
		t.Fatalf("answers %v: want only b's ssh at 5000", got)
	}
	if ign.BadSignature != 2 || ign.NotAsked != 1 || ign.Malformed != 1 {
		t.Fatalf("ignored %+v: want 2 bad signatures, 1 not asked, 1 malformed", ign)
	}
	// A genuine answer replayed to another query does not verify.
	ans := AppendAnswer(nil, b.Identity(), a.SID(), Nonce{1}, []Service{{"ssh", 5000}})
	if _, err := VerifyAnswer(ans, b.SID(), a.SID(), Nonce{2}); err == nil {
		t.Fatal("an answer to another query verified")
	}
	if _, err := VerifyAnswer(ans, b.SID(), b.SID(), Nonce{1}); err == nil {
		t.Fatal("an answer to another asker verified")
	}
}

// TestTwoAnswersListed: two nodes offering one name are both found,
// nearest first.
func TestTwoAnswersListed(t *testing.T) {
	a, b := meshPair(t)
	responder(t, a, Service{"ssh", 22})
	responder(t, b, Service{"ssh", 5000})
	got, _ := find(t, a, "ssh", 3*time.Second)
	if len(got) != 2 || got[0].SID != a.SID() || got[1].SID != b.SID() {
		t.Fatalf("answers %v: want a's (0 hops) then b's", got)
	}
}

// TestQueryFloodBounded: queries are cheap to send and each answer costs
// a signature, so a responder signs at most MaxAnswersPerSecond a second
// (bursts as large) and counts the queries it drops.
func TestQueryFloodBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := meshPair(t)
		rb := responder(t, b, Service{"ssh", 5000})
		pc, err := a.Bind(0)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		var answers atomic.Int64
		go func() {
			buf := make([]byte, 2048)
			for {
				if _, _, err := pc.ReadFrom(buf); err != nil {
					return
				}
				answers.Add(1)
			}
		}()
		const flood = 3 * MaxAnswersPerSecond
		to := mesh.Addr{SID: b.SID(), Port: Port}
		for i := range flood {
			if _, err := pc.WriteTo(AppendQuery(nil, Nonce{byte(i), byte(i >> 8)}, "ssh"), to); err != nil {
				t.Fatal(err)
			}
			if i%50 == 49 {
				time.Sleep(time.Millisecond) // let the mesh carry them
			}
		}
		time.Sleep(time.Second)
		synctest.Wait()
		got, dropped := answers.Load(), rb.Dropped()
		if got > 2*MaxAnswersPerSecond || got == 0 || dropped == 0 || got+int64(dropped) > flood {
			t.Fatalf("%d queries: %d answered, %d dropped; want at most %d answered, the rest counted", flood, got, dropped, 2*MaxAnswersPerSecond)
		}
		t.Logf("%d queries within ~1 s: %d answered, %d dropped", flood, got, dropped)
	})
}
