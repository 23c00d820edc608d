package instance

import (
	"bytes"
	"errors"
	"log/slog"
	"testing"
	"time"
)

// TestLineHandler: every record is one "servald: ..." line, with the level
// only for warnings and errors, attributes as key=value (quoted when they
// hold spaces), groups flattened, and records below the level dropped.
func TestLineHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(NewLineHandler(&buf, "servald", slog.LevelInfo))
	log.Debug("not shown")
	log.Info("session open", "peer", "ABCD", "rtt", 1500*time.Microsecond)
	log.Warn("splitter: refused", "err", errors.New("unknown session"))
	log.With("conn", 3).WithGroup("fec").Error("two\nlines", "rebuilt", 2, slog.Group("in", "x", ""))
	want := "servald: session open peer=ABCD rtt=1.5ms\n" +
		"servald: warning: splitter: refused err=\"unknown session\"\n" +
		"servald: error: two; lines conn=3 fec.rebuilt=2 fec.in.x=\"\"\n"
	if got := buf.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}
