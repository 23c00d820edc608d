package udprelay

import (
	"runtime"
	"syscall"
)

// raise moves the calling goroutine to a thread of its own at the
// relay's nice value, when one is set. The thread ends with the goroutine
// (it stays locked), so no raised thread goes back to the runtime's pool.
func (r *Relay) raise() {
	if r.nice >= 0 {
		return
	}
	runtime.LockOSThread()
	if syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), r.nice) != nil {
		r.prio.Store(false)
	}
}
