package probe

import (
	"time"

	"github.com/servald/servald/identity"
)

// bucket is a token bucket: it holds at most burst tokens and gains rate
// tokens a second.
type bucket struct {
	tokens float64
	at     time.Time // when tokens was last brought up to date
}

// take brings b up to now and takes a token if there is one.
func (b *bucket) take(now time.Time, rate, burst float64) bool {
	b.fill(now, rate, burst)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (b *bucket) fill(now time.Time, rate, burst float64) {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(burst, b.tokens+d.Seconds()*rate)
		b.at = now
	}
}

// limiter admits requests: a bucket per source SID (at most maxSources of
// them), then one for all sources together, so that a flood from one
// source costs the others nothing and forged sources cost at most the
// total rate. Not safe for concurrent use.
type limiter struct {
	rate, burst           float64
	totalRate, totalBurst float64
	maxSources            int
	total                 bucket
	sources               map[identity.SID]*bucket
}

func newLimiter(c ResponderConfig, now time.Time) *limiter {
	return &limiter{
		rate: c.Rate, burst: float64(c.Burst),
		totalRate: c.TotalRate, totalBurst: float64(c.TotalBurst),
		maxSources: c.MaxSources,
		total:      bucket{tokens: float64(c.TotalBurst), at: now},
		sources:    map[identity.SID]*bucket{},
	}
}

// allow reports whether a request from src may be answered now.
func (l *limiter) allow(src identity.SID, now time.Time) bool {
	b := l.sources[src]
	if b == nil {
		if len(l.sources) >= l.maxSources && !l.sweep(now) {
			return false
		}
		b = &bucket{tokens: l.burst, at: now}
		l.sources[src] = b
	}
	if !b.take(now, l.rate, l.burst) {
		return false
	}
	return l.total.take(now, l.totalRate, l.totalBurst)
}

// sweep forgets the sources whose buckets are full again (a fresh bucket is
// the same) and reports whether room was made.
func (l *limiter) sweep(now time.Time) bool {
	for src, b := range l.sources {
		if b.fill(now, l.rate, l.burst); b.tokens >= l.burst {
			delete(l.sources, src)
		}
	}
	return len(l.sources) < l.maxSources
}
