// Package ratelimit is the token bucket the packet paths share to bound
// what a sender can make a node do per second (signatures checked or
// made, answers sent): Rate tokens a second, at most Burst at once.
package ratelimit

import (
	"sync"
	"time"
)

// Bucket allows rate events a second with bursts of burst. It is safe for
// concurrent use.
type Bucket struct {
	mu     sync.Mutex
	tokens float64 // guarded by mu
	last   time.Time
	rate   float64
	burst  float64
}

// New returns a full bucket.
func New(rate, burst float64) *Bucket {
	return &Bucket{tokens: burst, last: time.Now(), rate: rate, burst: burst}
}

// Take takes one token if there is one.
func (b *Bucket) Take() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
