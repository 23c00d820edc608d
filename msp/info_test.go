package msp

import (
	"context"
	"io"
	"testing"
	"time"
)

// TestSessionInfo: both ends' summaries name each other, count the open
// stream and the bytes echoed, and the listener lists its session.
func TestSessionInfo(t *testing.T) {
	a, b := udpNodes(t)
	l, err := listenMesh(b, 5001, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	echoServer(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := dialMesh(ctx, a, b.SID(), 5001, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	msg := make([]byte, 100_000)
	go st.Write(msg)
	if _, err := io.ReadFull(st, make([]byte, len(msg))); err != nil {
		t.Fatal(err)
	}
	ci := s.Info()
	if ci.Peer != b.SID() || !ci.Initiator || ci.Streams != 1 || ci.BytesSent < uint64(len(msg)) || ci.BytesReceived < uint64(len(msg)) || ci.SRTTus <= 0 {
		t.Fatalf("dialler's info %+v", ci)
	}
	ls := l.Sessions()
	if len(ls) != 1 {
		t.Fatalf("listener lists %d sessions", len(ls))
	}
	li := ls[0].Info()
	if li.Peer != a.SID() || li.Initiator || li.LocalPort != 5001 || li.BytesReceived < uint64(len(msg)) {
		t.Fatalf("listener's info %+v", li)
	}
}
