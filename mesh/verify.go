package mesh

// Signature checks off the read loop.
//
// Flow: the read loop hands hellos that passed the cookie check, and every
// routing message (in order, so a retraction is never overtaken by the
// announcement it followed), to the verifier: two bounded queues and one
// worker goroutine, which takes hellos first. A hello is what keeps a
// neighbour (and its link keys) alive; behind a backlog of routing
// messages, each with hundreds of signatures, it would wait past the
// neighbour timeout on a busy node, the neighbour would be dropped and its
// routes with it, and the retractions would make more work still. Hellos
// are rate-limited per address and neighbour before they are queued, so
// they cannot starve routing. When a queue is full the job is dropped and
// counted (VerifyQueueDrops); the read loop, and with it relaying, never
// waits for a signature. A signature that failed once is remembered (by a
// hash of what was signed and the signature) in a bounded cache, so a
// replayed bad entry costs a hash lookup.

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

// verifier runs jobs on one goroutine: hellos first, each queue in the
// order it was submitted.
type verifier struct {
	hellos chan verifyJob
	jobs   chan verifyJob
	bytes  atomic.Int64 // bytes of the jobs queued
}

func newVerifier(queue int) *verifier {
	return &verifier{hellos: make(chan verifyJob, queue), jobs: make(chan verifyJob, queue)}
}

// submit queues run, which holds size bytes, behind the routing messages
// queued; it reports false (and drops the job) when the queue is full.
func (v *verifier) submit(size int, run func()) bool { return v.queue(v.jobs, size, run) }

// submitHello queues run, a hello's check, ahead of the routing messages.
func (v *verifier) submitHello(size int, run func()) bool { return v.queue(v.hellos, size, run) }

func (v *verifier) queue(q chan verifyJob, size int, run func()) bool {
	if v.bytes.Add(int64(size)) > verifyQueueBytes {
		v.bytes.Add(-int64(size))
		return false
	}
	select {
	case q <- verifyJob{size, run}:
		return true
	default:
		v.bytes.Add(-int64(size))
		return false
	}
}

// run works through the queues, hellos first, until ctx ends.
func (v *verifier) run(ctx context.Context) {
	for {
		var j verifyJob
		select {
		case j = <-v.hellos:
		default:
			select {
			case <-ctx.Done():
				return
			case j = <-v.hellos:
			case j = <-v.jobs:
			}
		}
		j.run()
		v.bytes.Add(-int64(j.size))
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
