package msp

import (
	"runtime"
	"testing"
	"testing/synctest"
)

// onVirtualTime runs f in a testing/synctest bubble, then empties smux's
// pool of result channels (a package-level sync.Pool in smux's session.go).
// A channel made in a bubble must not be used outside it or in another
// bubble ("select on synctest channel from outside bubble"), and smux keeps
// the ones a bubble's sessions put back. A sync.Pool drops its contents in
// two garbage collections.
func onVirtualTime(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	synctest.Test(t, f)
	runtime.GC()
	runtime.GC()
}
