// Package udprelay is a benchmark-only UDP relay that stands for a real
// link between two processes on loopback: per direction it drops a share
// of datagrams, delays them, adds jitter, caps the rate and enforces an
// MTU, with a seeded RNG, bounded queues and counters.
package udprelay
