package mesh

import (
	"errors"
	"os"
	"testing"
	"time"
)

// TestReadFromSeesMovedDeadline: a ReadFrom blocked with no deadline, or
// with one far off, returns when the read deadline is set, moved earlier
// or moved into the past while it waits (net.PacketConn: a deadline
// applies to pending calls). Before, a ReadFrom that began without a
// deadline never saw one set later.
func TestReadFromSeesMovedDeadline(t *testing.T) {
	n := forgedNode(t, forgedNet(t).Listen())
	pc, err := n.Bind(0)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	cases := []struct {
		name   string
		before time.Duration // the deadline when ReadFrom blocks; 0: none
		moved  time.Duration // from when it is moved
	}{
		{"set while blocked", 0, 50 * time.Millisecond},
		{"past while blocked", 0, -time.Second},
		{"moved earlier", time.Hour, 50 * time.Millisecond},
		{"moved into the past", time.Hour, -time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pc.SetReadDeadline(time.Time{})
			if tc.before != 0 {
				pc.SetReadDeadline(time.Now().Add(tc.before))
			}
			errc := make(chan error, 1)
			go func() {
				_, _, err := pc.ReadFrom(make([]byte, 64))
				errc <- err
			}()
			// Nothing arrives: give ReadFrom time to block (if it has not,
			// it sees the deadline all the same, and the test proves less).
			select {
			case err := <-errc:
				t.Fatalf("ReadFrom returned before the deadline moved: %v", err)
			case <-time.After(50 * time.Millisecond):
			}
			start := time.Now()
			pc.SetReadDeadline(start.Add(tc.moved))
			select {
			case err := <-errc:
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("ReadFrom: %v, want os.ErrDeadlineExceeded", err)
				}
				if el := time.Since(start); el < tc.moved {
					t.Fatalf("ReadFrom returned after %v, before the deadline (%v)", el, tc.moved)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the blocked ReadFrom did not see the moved deadline")
			}
		})
	}
}
