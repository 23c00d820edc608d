package mesh

import (
	"context"
	"slices"
	"testing"
)

// TestVerifierHellosFirst: a hello queued behind routing messages is
// checked before them (a busy node must not drop a neighbour whose hellos
// wait behind hundreds of signatures); the routing messages keep their
// order, and flush still waits for everything submitted before it.
func TestVerifierHellosFirst(t *testing.T) {
	v := newVerifier(16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { v.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	gate := make(chan struct{})
	var order []string
	v.submit(0, func() { <-gate })
	for _, name := range []string{"route 1", "route 2", "route 3"} {
		if !v.submit(1, func() { order = append(order, name) }) {
			t.Fatal("routing job refused")
		}
	}
	if !v.submitHello(1, func() { order = append(order, "hello") }) {
		t.Fatal("hello refused")
	}
	close(gate)
	v.flush(ctx)
	if want := []string{"hello", "route 1", "route 2", "route 3"}; !slices.Equal(order, want) {
		t.Fatalf("ran %q, want %q", order, want)
	}
	if b := v.bytes.Load(); b != 0 {
		t.Fatalf("%d bytes still counted as queued", b)
	}
}
