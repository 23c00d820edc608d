package msp

// Replayed and forged DATA packets: a session's sealed packets are recorded
// as the dialer sends them, sent again (replays) or altered (forgeries), and
// the listener's endpoint must drop them, count them, and leave the stream
// untouched.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/mesh"
	"github.com/servald/servald/msp/internal/seal"
)

// maxTapped bounds the packets a recordingTransport keeps.
const maxTapped = 256

// recordingTransport is an MDP port that keeps a copy of the first sealed
// DATA packets written through it.
type recordingTransport struct {
	*mesh.PacketConn
	mu   sync.Mutex
	data [][]byte
}

func (r *recordingTransport) WriteTo(p []byte, addr net.Addr) (int, error) {
	// Recorded once queued, so a replay sent later follows the original.
	k, err := r.PacketConn.WriteTo(p, addr)
	if err == nil && len(p) > 0 && p[0] == seal.TypeData {
		r.mu.Lock()
		if len(r.data) < maxTapped {
			r.data = append(r.data, bytes.Clone(p))
		}
		r.mu.Unlock()
	}
	return k, err
}

func (r *recordingTransport) recorded() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.data...)
}

var _ Transport = (*recordingTransport)(nil)

// echoRound writes msg on c and reads it back byte for byte.
func echoRound(t *testing.T, c net.Conn, msg []byte) {
	t.Helper()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	defer c.SetDeadline(time.Time{})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		errc <- err
	}()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("echo read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("echo write: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo of %d bytes differs", len(msg))
	}
}

func TestReplayedAndForgedDataRejected(t *testing.T) {
	onVirtualTime(t, func(t *testing.T) {
		a, b, _ := memNodes(t, memnet.LinkConfig{Delay: time.Millisecond})
		const port = 5100
		l, err := listenMesh(b, port, Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		echoServer(t, l)

		pc, err := a.Bind(0)
		if err != nil {
			t.Fatal(err)
		}
		tap := &recordingTransport{PacketConn: pc}
		remote := mesh.Addr{SID: b.SID(), Port: port}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		s, err := Dialer{Identity: a.Identity()}.Dial(ctx, tap, b.SID(), port)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		st, err := s.OpenStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()

		msg := make([]byte, 256<<10)
		rand.Read(msg)
		echoRound(t, st, msg)

		l.mu.Lock()
		ep := l.eps[0]
		l.mu.Unlock()
		replayed0, auth0 := ep.stats.replayed.Load(), ep.stats.authFailed.Load()
		unknown0, malformed0 := ep.stats.unknownIndex.Load(), ep.stats.malformed.Load()

		// Replays: every DATA packet recorded so far went through before (the
		// echo came back, and the path to the listener keeps order), so each
		// must be dropped as a replay. They are sent through the same port,
		// bypassing the recorder, so they look like the session's own.
		recorded := tap.recorded()
		if len(recorded) < 10 {
			t.Fatalf("only %d DATA packets recorded", len(recorded))
		}
		for _, p := range recorded {
			if _, err := pc.WriteTo(p, remote); err != nil {
				t.Fatalf("replay: %v", err)
			}
		}

		// Forgeries: packets for the session's index with a counter it has not
		// seen, so the replay window lets them through to the AEAD check.
		last := recorded[len(recorded)-1]
		counter := func(p []byte, n uint64) []byte {
			binary.BigEndian.PutUint64(p[1+4:], n)
			return p
		}
		flipped := bytes.Clone(last)
		flipped[len(flipped)-1] ^= 1
		garbage := make([]byte, len(last))
		rand.Read(garbage)
		copy(garbage, last[:seal.HeaderLen])
		forged := [][]byte{
			counter(bytes.Clone(last), 1<<40),                   // a new counter: the nonce no longer matches
			counter(flipped, 1<<40+1),                           // tag damaged
			counter(garbage, 1<<40+2),                           // random ciphertext
			counter(bytes.Clone(last[:seal.Overhead]), 1<<40+3), // shortest possible, wrong tag
		}
		for _, p := range forged {
			if _, err := pc.WriteTo(p, remote); err != nil {
				t.Fatalf("forgery: %v", err)
			}
		}
		// A DATA packet for an index no session has.
		stranger := bytes.Clone(last)
		binary.BigEndian.PutUint32(stranger[1:], binary.BigEndian.Uint32(last[1:])+1)
		pc.WriteTo(stranger, remote)

		// The stream carries on, byte exact: the forged high counters did not
		// move the replay window (that would make every later packet a replay).
		// This round trip is also the barrier: the listener reads its port in
		// order, so when the echo is back every injected packet was handled.
		msg2 := make([]byte, 512<<10)
		rand.Read(msg2)
		echoRound(t, st, msg2)

		replayed := ep.stats.replayed.Load() - replayed0
		authFailed := ep.stats.authFailed.Load() - auth0
		unknown := ep.stats.unknownIndex.Load() - unknown0
		t.Logf("injected %d replays, %d forgeries, 1 stranger: counted replayed %d, authFailed %d, unknownIndex %d, malformed %d",
			len(recorded), len(forged), replayed, authFailed, unknown, ep.stats.malformed.Load()-malformed0)
		if replayed != uint64(len(recorded)) {
			t.Errorf("replayed = %d, want %d", replayed, len(recorded))
		}
		if authFailed != uint64(len(forged)) {
			t.Errorf("authFailed = %d, want %d", authFailed, len(forged))
		}
		if unknown != 1 {
			t.Errorf("unknownIndex = %d, want 1", unknown)
		}
		if s.Err() != nil {
			t.Fatalf("session ended: %v", s.Err())
		}
	})
}

// Replays arriving at the dialer: the listener's packets, recorded on their
// way out (through Listen), are sent to the dialer again.
func TestReplayToDialerRejected(t *testing.T) {
	onVirtualTime(t, func(t *testing.T) {
		a, b, _ := memNodes(t, memnet.LinkConfig{})
		const port = 5101
		lpc, err := b.Bind(port)
		if err != nil {
			t.Fatal(err)
		}
		tap := &recordingTransport{PacketConn: lpc}
		l := Listen(tap, b.Identity(), port, Config{})
		defer l.Close()
		echoServer(t, l)

		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		s, err := dialMesh(ctx, a, b.SID(), port, Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		st, err := s.OpenStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		msg := make([]byte, 64<<10)
		rand.Read(msg)
		echoRound(t, st, msg)

		ep := s.ep
		replayed0 := ep.stats.replayed.Load()
		recorded := tap.recorded()
		if len(recorded) == 0 {
			t.Fatal("no DATA packets recorded at the listener")
		}
		for _, p := range recorded {
			lpc.WriteTo(p, s.ep.tr.LocalAddr())
		}
		msg2 := make([]byte, 64<<10)
		rand.Read(msg2)
		echoRound(t, st, msg2)
		// The echo left the listener's port after the replays, on the same
		// path: they were all handled when it is back.
		if got := ep.stats.replayed.Load() - replayed0; got != uint64(len(recorded)) {
			t.Errorf("dialer counted %d replays, want %d", got, len(recorded))
		}
		t.Logf("%d replays to the dialer counted", len(recorded))
	})
}
