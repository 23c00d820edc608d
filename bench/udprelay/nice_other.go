//go:build !linux

package udprelay

// raise is a no-op here: thread priorities are Linux's (Prioritized
// reports false).
func (r *Relay) raise() { r.prio.Store(false) }
