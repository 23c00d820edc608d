package ratelimit

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestBucket(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := New(10, 5)
		n := 0
		for b.Take() {
			n++
		}
		if n != 5 {
			t.Fatalf("a full bucket gave %d, want its burst 5", n)
		}
		time.Sleep(300 * time.Millisecond)
		n = 0
		for b.Take() {
			n++
		}
		if n != 3 {
			t.Fatalf("300 ms at 10/s gave %d, want 3", n)
		}
		time.Sleep(time.Hour)
		n = 0
		for b.Take() {
			n++
		}
		if n != 5 {
			t.Fatalf("after an hour %d, want at most the burst 5", n)
		}
	})
}
