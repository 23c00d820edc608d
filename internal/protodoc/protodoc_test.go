package protodoc

import "testing"

type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Errorf(string, ...any) { r.failed = true }
func (r *recorder) Helper()               {}

func TestCheck(t *testing.T) {
	// A phrase the document holds, split over lines there.
	Check(t, "All integers are big-endian unless said otherwise.")
	r := &recorder{TB: t}
	Check(r, "a sentence PROTOCOL.md never says 1234567")
	if !r.failed {
		t.Fatal("Check passed a phrase the document does not hold")
	}
}
