package memnet

// The heap holds every datagram copy in flight, ordered by arrival time;
// only Network (under its lock) touches it.

import "time"

// event is one datagram copy in flight: due at `at`, on link l.
type event struct {
	at   time.Duration
	seq  uint64
	l    *link
	data []byte
}

// eventHeap is a binary min-heap of events by (at, seq). It holds values,
// not pointers, so pushing does not allocate once grown.
type eventHeap []event

func (h eventHeap) less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}

func (h *eventHeap) push(e event) {
	*h = append(*h, e)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !s.less(i, p) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *eventHeap) pop() event {
	s := *h
	last := len(s) - 1
	e := s[0]
	s[0] = s[last]
	s[last] = event{}
	s = s[:last]
	*h = s
	i := 0
	for {
		l := 2*i + 1
		if l >= len(s) {
			break
		}
		m := l
		if r := l + 1; r < len(s) && s.less(r, l) {
			m = r
		}
		if !s.less(m, i) {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	return e
}
