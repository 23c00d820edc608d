package mesh

// Signature checks off the read loop.
//
// Flow: the read loop hands hellos that passed the cookie check, and every
// routing message (in order, so a retraction is never overtaken by the
// announcement it followed), to the verifier: a bounded queue and one
// worker goroutine. When the queue is full the job is dropped and counted
// (VerifyQueueDrops); the read loop, and with it relaying, never waits for
// a signature. A signature that failed once is remembered (by a hash of
// what was signed and the signature) in a bounded cache, so a replayed bad
// entry costs a hash lookup.

import (
	"context"
	"sync"
	"sync/atomic"
)

// verifyQueueBytes bounds the bytes of frames waiting for the verifier.
const verifyQueueBytes = 4 << 20

type verifyJob struct {
	size int
	run  func()
}

// verifier runs jobs on one goroutine, in the order they were submitted.
type verifier struct {
	jobs  chan verifyJob
	bytes atomic.Int64 // bytes of the jobs queued
}

func newVerifier(queue int) *verifier {
	return &verifier{jobs: make(chan verifyJob, queue)}
}

// submit queues run, which holds size bytes; it reports false (and drops
// the job) when the queue is full.
func (v *verifier) submit(size int, run func()) bool {
	if v.bytes.Add(int64(size)) > verifyQueueBytes {
		v.bytes.Add(-int64(size))
		return false
	}
	select {
	case v.jobs <- verifyJob{size, run}:
		return true
	default:
		v.bytes.Add(-int64(size))
		return false
	}
}

// run works through the queue until ctx ends.
func (v *verifier) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-v.jobs:
			j.run()
			v.bytes.Add(-int64(j.size))
		}
	}
}

// flush returns once every job submitted before it has run (tests), or
// when ctx ends.
func (v *verifier) flush(ctx context.Context) {
	done := make(chan struct{})
	for !v.submit(0, func() { close(done) }) {
		select {
		case <-ctx.Done():
			return
		default:
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// badSigCacheSize bounds the failed signatures remembered.
const badSigCacheSize = 4096

// badSigCache remembers failed signatures by hash; the oldest is forgotten
// first.
type badSigCache struct {
	mu   sync.Mutex
	set  map[[32]byte]struct{} // guarded by mu
	ring [][32]byte            // insertion order; guarded by mu
	next int                   // guarded by mu
}

func newBadSigCache() *badSigCache {
	return &badSigCache{set: map[[32]byte]struct{}{}}
}

func (c *badSigCache) has(k [32]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.set[k]
	return ok
}

func (c *badSigCache) add(k [32]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.set[k]; ok {
		return
	}
	if len(c.ring) < badSigCacheSize {
		c.ring = append(c.ring, k)
	} else {
		delete(c.set, c.ring[c.next])
		c.ring[c.next] = k
		c.next = (c.next + 1) % badSigCacheSize
	}
	c.set[k] = struct{}{}
}
