package instance

// Surviving a daemon restart. A command attached to the instance's daemon
// notices that the daemon went away when a bound port's reads end with
// daemon.ErrDaemonGone (ErrDaemonStopping after `servald stop`), and says
// so once. A listener (ListenService) keeps its process, re-dials the
// socket with backoff, binds the same MDP port again, serves it on the
// same msp.Listener and advertises its service again; a connector's
// Redialer finds its session ended and opens a new one on the next
// connection, and until the daemon is back each connection is refused at
// once (Bind and WaitReachable fail with "the daemon is not running").
//
//	daemon stops ─► Port.ReadFrom: ErrDaemonStopping ─► watched.ReadFrom ─► link.lost: one line
//	                                                    └► gone closed ─► Listening.reattach: Status, Bind, Serve, Advertise ─► link.back: one line

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/servald/servald/daemon"
	"github.com/servald/servald/msp"
)

// Backoff of the re-attach loop: the first try 200 ms after the daemon
// went away, then doubling up to 2 s between tries.
const (
	reattachFirst = 200 * time.Millisecond
	reattachMax   = 2 * time.Second
)

// daemonLink is what a Mesh reached through the daemon knows of the
// daemon across its restarts: whether it is away, and whom to tell.
type daemonLink struct {
	mu   sync.Mutex
	away bool         // guarded by mu
	why  error        // guarded by mu; how it went away, while away
	say  func(string) // guarded by mu; nil: silent
}

// setSay sets where the lines go.
func (l *daemonLink) setSay(say func(string)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.say = say
}

// lost records that the daemon went away (err says how) and says so, once
// per absence.
func (l *daemonLink) lost(err error) {
	l.mu.Lock()
	if l.away {
		l.mu.Unlock()
		return
	}
	l.away, l.why = true, err
	say := l.say
	l.mu.Unlock()
	if say == nil {
		return
	}
	if errors.Is(err, daemon.ErrDaemonStopping) {
		say("the daemon is stopping (servald stop); waiting for it to come back (servald start)")
		return
	}
	say("daemon went away; waiting for it to come back (servald start)")
}

// isAway reports whether the daemon is known to be away.
func (l *daemonLink) isAway() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.away
}

// back records that the daemon (pid) answers again and says so, if it
// had gone away.
func (l *daemonLink) back(pid int) {
	l.mu.Lock()
	was := l.away
	l.away, l.why = false, nil
	say := l.say
	l.mu.Unlock()
	if was && say != nil {
		say(fmt.Sprintf("re-attached to the daemon (pid %d)", pid))
	}
}

// Announce makes m, when it reaches the mesh through the instance's
// daemon, say (one line each) when the daemon goes away and when it is
// back; nil: silent. It does nothing for a node in this process.
func Announce(m Mesh, say func(string)) {
	if d, ok := m.(viaDaemon); ok {
		d.link.setSay(say)
	}
}

// DaemonGone says, while m's daemon is away, how it went: "the daemon of
// this instance stopped (servald stop)" (wrapping
// daemon.ErrDaemonStopping) or "... went away" (daemon.ErrDaemonGone or
// daemon.ErrNotRunning); nil while it is there, and for a node in this
// process (or m nil).
func DaemonGone(m Mesh) error {
	text, why := goneText(m)
	if why == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", text, why)
}

// goneText is DaemonGone's text and cause; a nil cause while attached.
func goneText(m Mesh) (string, error) {
	d, ok := m.(viaDaemon)
	if !ok {
		return "", nil
	}
	d.link.mu.Lock()
	defer d.link.mu.Unlock()
	switch {
	case !d.link.away:
		return "", nil
	case errors.Is(d.link.why, daemon.ErrDaemonStopping):
		return "the daemon of this instance stopped (servald stop)", d.link.why
	}
	return "the daemon of this instance went away", d.link.why
}

// StreamBroke is the error of a stdio stream through m that broke with
// err: "the daemon of this instance stopped (servald stop): stream broke"
// when its daemon went away (such a stream cannot outlive it), else
// "stream broke: ERR".
func StreamBroke(m Mesh, err error) error {
	if text, why := goneText(m); why != nil {
		return errors.New(text + ": stream broke")
	}
	return fmt.Errorf("stream broke: %w", err)
}

// WhileAttached returns ctx, cancelled too when sess ends because m's
// daemon went away: a stdio join whose stdin stays open would otherwise
// wait for it. The caller calls cancel when done.
func WhileAttached(ctx context.Context, m Mesh, sess *msp.Session) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	if _, ok := m.(viaDaemon); !ok {
		return ctx, cancel
	}
	go func() {
		select {
		case <-sess.Done():
			if DaemonGone(m) != nil {
				cancel()
			}
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// watched is a daemon port that tells its link, and closes gone, when the
// daemon goes away.
type watched struct {
	*daemon.Port
	link *daemonLink
	once sync.Once
	gone chan struct{}
}

func newWatched(p *daemon.Port, link *daemonLink) *watched {
	return &watched{Port: p, link: link, gone: make(chan struct{})}
}

// ReadFrom reads from the port, noticing the daemon's end.
func (w *watched) ReadFrom(b []byte) (int, net.Addr, error) {
	n, a, err := w.Port.ReadFrom(b)
	if err != nil && errors.Is(err, daemon.ErrDaemonGone) {
		w.link.lost(err)
		w.once.Do(func() { close(w.gone) })
	}
	return n, a, err
}

// notRunning explains a request that found no daemon: it went away.
func (d viaDaemon) notRunning(err error) error {
	if !errors.Is(err, daemon.ErrNotRunning) {
		return err
	}
	d.link.lost(err)
	return fmt.Errorf("the daemon of this instance is not running: refused until it is back (servald start): %w", err)
}

// backAgain says the daemon is back after an absence (asking its pid).
func (d viaDaemon) backAgain(ctx context.Context) {
	if !d.link.isAway() {
		return
	}
	if st, err := d.c.Status(ctx); err == nil {
		d.link.back(st.PID)
	}
}

// Listening is an MSP listener on an MDP port, with its service
// advertised. Through the instance's daemon, it outlives the daemon: see
// ListenService.
type Listening struct {
	*msp.Listener
	m    Mesh
	port uint16
	show Shown // its service (advertised) and target, for status reports
	log  *slog.Logger

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex
	ad io.Closer // guarded by mu; the standing advertisement, nil for none
}

// ListenService accepts MSP sessions on MDP port of m and advertises
// sh.Service there (none for ""); through a daemon, the port reports the
// sessions for `servald status` with what sh says (as Listen). Through
// the instance's daemon, when the
// daemon goes away (stops, or dies) it says so with say, waits for it to
// come back (trying again every 200 ms to 2 s), binds port again and
// serves it on the same Listener, advertises service again, and says it
// re-attached; meanwhile the Listener accepts nothing. Close stops all
// that. An error advertising is "--service: ...".
func ListenService(m Mesh, port uint16, cfg msp.Config, sh Shown, say func(string)) (*Listening, error) {
	tr, err := m.Bind(port)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Listening{
		Listener: msp.Listen(tr, m.Identity(), port, cfg),
		m:        m, port: port, show: sh, log: logger(cfg.Logger),
		ctx: ctx, cancel: cancel,
	}
	reportSessions(tr, daemon.RoleListen, sh, l.Listener.Sessions)
	if err := l.advertise(); err != nil {
		l.Close()
		return nil, err
	}
	if d, ok := m.(viaDaemon); ok {
		d.link.setSay(say)
		if w, ok := tr.(*watched); ok {
			l.wg.Add(1)
			go l.reattach(d, w)
		}
	}
	return l, nil
}

// advertise advertises the service, if any.
func (l *Listening) advertise() error {
	if l.show.Service == "" {
		return nil
	}
	ad, err := l.m.Advertise(l.show.Service, l.port, l.log)
	if err != nil {
		return fmt.Errorf("--service: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ctx.Err() != nil {
		ad.Close()
		return net.ErrClosed
	}
	l.ad = ad
	return nil
}

// withdraw closes the advertisement, if any.
func (l *Listening) withdraw() {
	l.mu.Lock()
	ad := l.ad
	l.ad = nil
	l.mu.Unlock()
	if ad != nil {
		ad.Close()
	}
}

// reattach waits for the daemon to go away, then for it to come back, and
// binds, serves and advertises again, until Close.
func (l *Listening) reattach(d viaDaemon, w *watched) {
	defer l.wg.Done()
	for w != nil {
		select {
		case <-w.gone:
		case <-l.ctx.Done():
			return
		}
		l.withdraw()
		w = l.rebind(d)
	}
}

// rebind tries, with backoff, to bind the port on a daemon of this
// instance's identity and serve it; nil when Close came first.
func (l *Listening) rebind(d viaDaemon) *watched {
	wait := reattachFirst
	for {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-l.ctx.Done():
			t.Stop()
			return nil
		}
		wait = min(2*wait, reattachMax)
		w, pid, err := l.bindAgain(d)
		if err != nil {
			l.log.Debug("daemon not back yet", "err", err)
			continue
		}
		reportSessions(w, daemon.RoleListen, l.show, l.Listener.Sessions)
		l.Listener.Serve(w)
		if err := l.advertise(); err != nil && l.ctx.Err() == nil {
			l.log.Warn("re-attached, but the service is not advertised", "err", err)
		}
		d.link.back(pid)
		return w
	}
}

// bindAgain binds the port on the daemon, if one of this instance's
// identity answers.
func (l *Listening) bindAgain(d viaDaemon) (*watched, int, error) {
	ctx, cancel := context.WithTimeout(l.ctx, DaemonTimeout)
	defer cancel()
	st, err := d.c.Status(ctx)
	if err != nil {
		return nil, 0, err
	}
	if st.SID != d.id.SID() {
		return nil, 0, fmt.Errorf("the daemon (pid %d) runs as %s, not %s", st.PID, st.SID, d.id.SID())
	}
	p, err := d.c.Bind(ctx, l.port)
	if err != nil {
		return nil, 0, err
	}
	return newWatched(p, d.link), st.PID, nil
}

// Close stops re-attaching, withdraws the service and closes the
// listener. It is idempotent.
func (l *Listening) Close() error {
	l.cancel()
	l.wg.Wait()
	l.withdraw()
	return l.Listener.Close()
}

// compile-time check: a watched port is an MSP transport.
var _ msp.Transport = (*watched)(nil)
