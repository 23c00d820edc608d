package splitmsp

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/msp"
	"github.com/servald/servald/splitter"
)

// serveEcho serves MSP as server over split sessions on 127.0.0.1:0 with
// cfg, echoing every stream at MDP port 5000, until the test ends.
func serveEcho(t *testing.T, server *identity.Identity, cfg splitter.Config, mcfg msp.Config) (*Server, *splitter.Listener) {
	t.Helper()
	ln, err := splitter.Listen("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis := msp.Listen(nil, server, 5000, mcfg)
	srv := Serve(lis, ln)
	t.Cleanup(func() { srv.Close() })
	go func() {
		for {
			st, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				io.Copy(st, st)
				st.Close()
			}()
		}
	}()
	return srv, ln
}

func newID(t *testing.T) *identity.Identity {
	t.Helper()
	id, err := identity.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestDialErrors: each way a dial over split transport fails is told by
// its type, not by its words.
func TestDialErrors(t *testing.T) {
	server, client := newID(t), newID(t)
	cfg := splitter.DefaultConfig()
	cfg.Conns = 2
	_, ln := serveEcho(t, server, cfg, msp.Config{Allow: func(s identity.SID) bool { return s != client.SID() }})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr := ln.Addr().String()

	t.Run("wrong node", func(t *testing.T) {
		other := newID(t)
		d := &Dialer{Addr: addr, Config: cfg, Identity: newID(t)}
		s, err := d.Dial(ctx, other.SID(), 5000, msp.Config{})
		var wn *WrongNodeError
		if !errors.Is(err, ErrWrongNode) || !errors.As(err, &wn) || wn.SID != other.SID() || wn.Addr != addr {
			if s != nil {
				s.Close()
			}
			t.Fatalf("Dial to a node that is not there: %v, want a *WrongNodeError", err)
		}
		if want := "split " + addr + ": the node there is not " + other.SID().String(); !strings.HasPrefix(err.Error(), want) {
			t.Errorf("error %q, want it to start %q", err, want)
		}
	})
	t.Run("refused", func(t *testing.T) {
		d := &Dialer{Addr: addr, Config: cfg, Identity: client}
		_, err := d.Dial(ctx, server.SID(), 5000, msp.Config{})
		if !errors.Is(err, msp.ErrRefused) || errors.Is(err, ErrWrongNode) {
			t.Fatalf("Dial as a SID not allowed: %v, want msp.ErrRefused only", err)
		}
	})
	t.Run("fec mismatch", func(t *testing.T) {
		other := cfg
		other.DataShards, other.ParityShards = 8, 2
		d := &Dialer{Addr: addr, Config: other, Identity: newID(t)}
		_, err := d.Dial(ctx, server.SID(), 5000, msp.Config{})
		var de *DialError
		var ne *splitter.NegotiationError
		if !errors.As(err, &de) || de.Addr != addr || !errors.As(err, &ne) || ne.Param != "fec" {
			t.Fatalf("Dial with another --fec: %v, want a *DialError wrapping a fec *splitter.NegotiationError", err)
		}
	})
	t.Run("nothing there", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		free := l.Addr().String()
		l.Close()
		d := &Dialer{Addr: free, Config: cfg, Identity: newID(t)}
		_, err = d.Dial(ctx, server.SID(), 5000, msp.Config{})
		var de *DialError
		if !errors.As(err, &de) || de.Addr != free || !strings.HasPrefix(err.Error(), "split "+free+": ") {
			t.Fatalf("Dial with nothing listening: %v, want a *DialError", err)
		}
		if n, _ := d.Stats(); n != 0 {
			t.Errorf("%d sessions counted, want 0", n)
		}
	})
	t.Run("ok", func(t *testing.T) {
		d := &Dialer{Addr: addr, Config: cfg, Identity: newID(t)}
		s, err := d.Dial(ctx, server.SID(), 5000, msp.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		st, err := s.OpenStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		st.SetDeadline(time.Now().Add(10 * time.Second))
		st.Write([]byte("hi"))
		buf := make([]byte, 2)
		if _, err := st.Read(buf); err != nil || string(buf) != "hi" {
			t.Fatalf("echo %q, %v", buf, err)
		}
		st.Close()
		if n, sum := d.Stats(); n != 1 || sum.ConnsOpened < 1 {
			t.Errorf("Stats = %d sessions, %d connections; want 1 and at least 1", n, sum.ConnsOpened)
		}
	})
}
