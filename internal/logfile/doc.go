// Package logfile is a daemon's log file: opened for appending (never
// truncated), never through a symbolic link, created 0600, and rotated to
// NAME.1 (one old file kept) when it would grow past a size cap.
package logfile
