package msp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/servald/servald/identity"
)

// TestHalfCloseEchoNoLoss: many short exchanges at once on one session,
// each a write, CloseWrite and a read to io.EOF against an echo, whose
// reply and FIN arrive back to back. The readers poll (short read
// deadlines), so that one is often between finding its buffer empty and
// looking for the end of the stream when both land: every reply must
// still arrive whole, before io.EOF. (smux v1.5.58 alone lost about one
// reply in 10^4 here; see Stream.Read.)
func TestHalfCloseEchoNoLoss(t *testing.T) {
	server, _ := identity.Generate(nil)
	client, _ := identity.Generate(nil)
	l := Listen(nil, server, 5000, Config{})
	defer l.Close()
	echoServer(t, l)
	s, _, err := dialStream(t, streamListener(t, l), client, server.SID(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	streams, workers := 20000, 32
	if testing.Short() {
		streams = 2000
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	jobs := make(chan int)
	errs := make(chan string, streams)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if e := halfCloseEcho(ctx, s, fmt.Sprintf("ping %d", i)); e != "" {
					errs <- fmt.Sprintf("stream %d: %s", i, e)
				}
			}
		}()
	}
	for i := range streams {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(errs)
	bad := 0
	for e := range errs {
		if bad++; bad <= 5 {
			t.Error(e)
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d exchanges lost their reply", bad, streams)
	}
}

// halfCloseEcho sends msg on a new stream of s, half-closes it, reads the
// reply to io.EOF and says what went wrong, if anything.
func halfCloseEcho(ctx context.Context, s *Session, msg string) string {
	st, err := s.OpenStream(ctx)
	if err != nil {
		return err.Error()
	}
	defer st.Close()
	st.SetDeadline(time.Now().Add(time.Minute))
	if _, err := io.WriteString(st, msg); err != nil {
		return "write: " + err.Error()
	}
	if err := st.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		return "close write: " + err.Error()
	}
	got, err := readPolling(st)
	if err != nil || string(got) != msg {
		return fmt.Sprintf("echo %q, %v", got, err)
	}
	return ""
}

// readPolling reads st to io.EOF as a reader that wakes up often does
// (short read deadlines, retried): each wake looks at the buffer again.
func readPolling(st net.Conn) ([]byte, error) {
	var got []byte
	buf := make([]byte, 512)
	for {
		st.SetReadDeadline(time.Now().Add(20 * time.Microsecond))
		n, err := st.Read(buf)
		got = append(got, buf[:n]...)
		var ne net.Error
		switch {
		case err == io.EOF:
			return got, nil
		case errors.As(err, &ne) && ne.Timeout():
		case err != nil:
			return got, err
		}
	}
}
