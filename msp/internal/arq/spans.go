package arq

// Interval sets. One type serves every "which of these numbers do we have"
// question of the engine: packet numbers received (for ACK frames), packet
// numbers acknowledged by the peer (so a repeated ACK range costs nothing),
// stream bytes received out of order, stream bytes acknowledged above the
// cumulative point, and stream bytes waiting for retransmission.

import "sort"

// span is the half-open interval [lo, hi).
type span struct{ lo, hi uint64 }

// spanSet is a sorted set of disjoint, non-adjacent half-open intervals.
// Operations are O(log n) to find the place plus the cost of a slice splice;
// the common cases (extending or appending the last span, removing the
// first) touch O(1) elements.
type spanSet struct {
	s []span
}

func (r *spanSet) empty() bool { return len(r.s) == 0 }

func (r *spanSet) count() int { return len(r.s) }

func (r *spanSet) first() span { return r.s[0] }

func (r *spanSet) last() span { return r.s[len(r.s)-1] }

// contains reports whether x is in the set.
func (r *spanSet) contains(x uint64) bool {
	n := len(r.s)
	if n == 0 {
		return false
	}
	if l := r.s[n-1]; x >= l.lo {
		return x < l.hi
	}
	i := sort.Search(n, func(i int) bool { return r.s[i].hi > x })
	return i < n && r.s[i].lo <= x
}

// touches reports whether [lo, hi) overlaps or adjoins a span of the set,
// so that adding it would not make the set longer.
func (r *spanSet) touches(lo, hi uint64) bool {
	i := sort.Search(len(r.s), func(i int) bool { return r.s[i].hi >= lo })
	return i < len(r.s) && r.s[i].lo <= hi
}

// add inserts [lo, hi) and calls fn (if not nil) for each sub-interval that
// was not in the set before, in ascending order.
func (r *spanSet) add(lo, hi uint64, fn func(lo, hi uint64)) {
	if lo >= hi {
		return
	}
	n := len(r.s)
	// Fast paths: past the last span, or overlapping/extending only it.
	if n == 0 || r.s[n-1].hi < lo {
		r.s = append(r.s, span{lo, hi})
		if fn != nil {
			fn(lo, hi)
		}
		return
	}
	if l := &r.s[n-1]; l.lo <= lo {
		if hi > l.hi {
			if fn != nil {
				fn(l.hi, hi)
			}
			l.hi = hi
		}
		return
	}
	// First span that ends at or after lo (touching spans merge).
	i := sort.Search(n, func(i int) bool { return r.s[i].hi >= lo })
	nlo, nhi := lo, hi
	cur := lo
	j := i
	for ; j < n && r.s[j].lo <= hi; j++ {
		sj := r.s[j]
		if fn != nil && sj.lo > cur {
			fn(cur, sj.lo)
		}
		if sj.hi > cur {
			cur = sj.hi
		}
		nlo = min(nlo, sj.lo)
		nhi = max(nhi, sj.hi)
	}
	if fn != nil && cur < hi {
		fn(cur, hi)
	}
	r.splice(i, j, span{nlo, nhi}, span{}, 1)
}

// gaps calls fn for each sub-interval of [lo, hi) that is not in the set, in
// ascending order.
func (r *spanSet) gaps(lo, hi uint64, fn func(lo, hi uint64)) {
	if lo >= hi {
		return
	}
	n := len(r.s)
	i := sort.Search(n, func(i int) bool { return r.s[i].hi > lo })
	cur := lo
	for ; i < n && r.s[i].lo < hi; i++ {
		if r.s[i].lo > cur {
			fn(cur, r.s[i].lo)
		}
		if r.s[i].hi > cur {
			cur = r.s[i].hi
		}
	}
	if cur < hi {
		fn(cur, hi)
	}
}

// remove deletes [lo, hi) from the set.
func (r *spanSet) remove(lo, hi uint64) {
	if lo >= hi || len(r.s) == 0 {
		return
	}
	n := len(r.s)
	if r.s[0].lo >= lo && r.s[0].hi <= hi && (n == 1 || r.s[1].lo >= hi) {
		// Fast path: exactly the first span goes.
		r.splice(0, 1, span{}, span{}, 0)
		return
	}
	i := sort.Search(n, func(i int) bool { return r.s[i].hi > lo })
	j := i
	for j < n && r.s[j].lo < hi {
		j++
	}
	if i == j {
		return
	}
	var a, b span
	k := 0
	if r.s[i].lo < lo {
		a = span{r.s[i].lo, lo}
		k++
	}
	if r.s[j-1].hi > hi {
		if k == 0 {
			a = span{hi, r.s[j-1].hi}
		} else {
			b = span{hi, r.s[j-1].hi}
		}
		k++
	}
	r.splice(i, j, a, b, k)
}

// trimBelow removes everything below x.
func (r *spanSet) trimBelow(x uint64) {
	k := 0
	for k < len(r.s) && r.s[k].hi <= x {
		k++
	}
	if k > 0 {
		r.splice(0, k, span{}, span{}, 0)
	}
	if len(r.s) > 0 && r.s[0].lo < x {
		r.s[0].lo = x
	}
}

// dropFirst removes the k lowest spans.
func (r *spanSet) dropFirst(k int) {
	r.splice(0, min(k, len(r.s)), span{}, span{}, 0)
}

// splice replaces r.s[i:j] with the first k (0, 1 or 2) of a, b.
func (r *spanSet) splice(i, j int, a, b span, k int) {
	d := k - (j - i)
	switch {
	case d == 0:
	case d < 0:
		copy(r.s[i+k:], r.s[j:])
		r.s = r.s[:len(r.s)+d]
	default:
		for range d {
			r.s = append(r.s, span{})
		}
		copy(r.s[j+d:], r.s[j:len(r.s)-d])
	}
	if k > 0 {
		r.s[i] = a
	}
	if k > 1 {
		r.s[i+1] = b
	}
}
