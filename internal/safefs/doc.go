// Package safefs checks and opens the files of an instance directory the
// way ssh treats ~/.ssh: a directory another user owns or may write to, a
// private file others may read, and a symbolic link planted where a file
// of ours belongs are refused with one line that says why and how to fix
// it, before anything is read from them or written to them.
//
// Only the last path component is protected against symbolic links; the
// directories above it are the caller's to check (CheckDir).
package safefs
