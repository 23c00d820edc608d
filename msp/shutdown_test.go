package msp

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"
)

// TestCleanEndRaces: one-shot exchanges, as `msp listen` / `msp connect`
// over stdio make them, where both ends shut their sessions down as soon
// as their own stream is done. Whichever shuts down first, and even both
// at once, every byte arrives, each reader sees io.EOF (not a broken
// stream), and both Shutdowns return nil.
func TestCleanEndRaces(t *testing.T) {
	a, b := udpNodes(t)
	l, err := listenMesh(b, 5000, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	rounds := 60
	if testing.Short() {
		rounds = 15
	}
	for i := range rounds {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		s, err := dialMesh(ctx, a, b.SID(), 5000, Config{})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan string, 4)
		// oneShot writes msg, half-closes, reads to EOF, closes, then shuts
		// its session down.
		oneShot := func(side string, st io.ReadWriteCloser, msg, want string, shutdown func(context.Context) error) {
			defer wg.Done()
			if _, err := io.WriteString(st, msg); err != nil {
				errs <- side + " write: " + err.Error()
			}
			st.(interface{ CloseWrite() error }).CloseWrite()
			got, err := io.ReadAll(st)
			if err != nil || string(got) != want {
				errs <- side + " read " + string(got) + ": " + errString(err)
			}
			st.Close()
			if err := shutdown(ctx); err != nil {
				errs <- side + " shutdown: " + err.Error()
			}
		}
		st, err := s.OpenStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(2)
		// The dialer sends; the listener sends nothing (as with stdin at
		// /dev/null), in even rounds, and the other way round in odd ones.
		msgA, msgB := "hi from a", ""
		if i%2 == 1 {
			msgA, msgB = "", "hi from b"
		}
		go oneShot("dialer", st, msgA, msgB, s.Shutdown)
		go func() {
			in, err := l.AcceptContext(ctx)
			if err != nil {
				errs <- "accept: " + err.Error()
				wg.Done()
				return
			}
			oneShot("listener", in, msgB, msgA, func(ctx context.Context) error { return nil })
		}()
		wg.Wait()
		cancel()
		close(errs)
		for e := range errs {
			t.Errorf("round %d: %s", i, e)
		}
		s.Close()
		if t.Failed() {
			return
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
