// Package deadline provides the settable deadline behind the SetDeadline,
// SetReadDeadline and SetWriteDeadline methods of a net.Conn or
// net.PacketConn: a point in time exposed as a channel that is closed when
// it passes, so that a blocked call selects on it and wakes when the
// deadline passes, is moved into the past, or was already over.
package deadline
