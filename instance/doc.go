// Package instance is what a servald command runs on: the instance
// directory's keyring and config file, and the mesh reached through the
// instance's daemon when one runs or through a node embedded in the
// process (Open returns either behind one Mesh interface). On a Mesh it
// dials MSP sessions (DialSession), keeps one dialled again when it ends
// (Redialer), resolves short SIDs against the routing table (SIDArg) and
// finds the node offering a service (Target). It also starts, stops and
// queries the daemon as a process (StartDaemon, StopDaemon, DialDaemon).
// The command line (cmd/servald) only parses flags, prints and chooses
// exit codes.
package instance
