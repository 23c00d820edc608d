package instance

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
)

// LineHandler is a slog.Handler that writes each record as one line in
// the command line's own format: "PREFIX: msg key=value ...", the level
// shown only for warnings and errors ("PREFIX: warning: msg ..."), no
// time. Errors read in the user's words (Explain); values with spaces,
// quotes or '=' are quoted.
type LineHandler struct {
	mu     *sync.Mutex // guards writes to w, shared by the handlers derived from one
	w      io.Writer
	level  slog.Leveler
	prefix string
	attrs  string // " k=v" pairs from WithAttrs, already formatted
	group  string // "g1.g2." from WithGroup
}

// NewLineHandler returns a LineHandler writing lines starting "prefix: "
// to w, for records at level or above.
func NewLineHandler(w io.Writer, prefix string, level slog.Leveler) *LineHandler {
	return &LineHandler{mu: &sync.Mutex{}, w: w, level: level, prefix: prefix}
}

// Enabled reports whether records at l are written.
func (h *LineHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

// Handle writes r as one line.
func (h *LineHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(h.prefix)
	b.WriteString(": ")
	switch {
	case r.Level >= slog.LevelError:
		b.WriteString("error: ")
	case r.Level >= slog.LevelWarn:
		b.WriteString("warning: ")
	}
	b.WriteString(oneLine(r.Message))
	b.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		appendAttr(&b, h.group, a)
		return true
	})
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

// WithAttrs returns a handler that adds attrs to every line.
func (h *LineHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var b strings.Builder
	for _, a := range attrs {
		appendAttr(&b, h.group, a)
	}
	h2 := *h
	h2.attrs += b.String()
	return &h2
}

// WithGroup returns a handler that qualifies later keys with name.
func (h *LineHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.group += name + "."
	return &h2
}

// appendAttr writes " key=value" (groups flattened as group.key).
func appendAttr(b *strings.Builder, group string, a slog.Attr) {
	v := a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if v.Kind() == slog.KindGroup {
		g := group
		if a.Key != "" {
			g += a.Key + "."
		}
		for _, ga := range v.Group() {
			appendAttr(b, g, ga)
		}
		return
	}
	b.WriteByte(' ')
	b.WriteString(group + a.Key)
	b.WriteByte('=')
	var s string
	switch v.Kind() {
	case slog.KindDuration:
		s = v.Duration().String()
	case slog.KindTime:
		s = v.Time().Format(time.RFC3339)
	default:
		s = v.String()
		if err, ok := v.Any().(error); ok && v.Kind() == slog.KindAny {
			s = Explain(err)
		}
	}
	if s == "" || strings.ContainsAny(s, " \t\n\r\"=") {
		s = strconv.Quote(s)
	}
	b.WriteString(s)
}

// oneLine keeps a message on its line.
func oneLine(s string) string {
	return strings.NewReplacer("\n", "; ", "\r", "").Replace(s)
}
