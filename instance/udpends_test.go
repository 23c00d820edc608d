package instance

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// udpFlags is EndFlags for --forward=udp: with the defaults of the flags.
func udpFlags(fwd string) EndFlags {
	return EndFlags{Forward: fwd, Deadline: 200 * time.Millisecond, UDPIdle: time.Minute}
}

// TestUDPEndFlags: --forward=udp: gives UDP flows with --deadline and
// --udp-idle on both sides; each mistake is a *UsageError naming the flag.
func TestUDPEndFlags(t *testing.T) {
	refused := []struct {
		name    string
		f       EndFlags
		connect bool
		want    string
	}{
		{"negative --deadline", EndFlags{Forward: "udp:53", Deadline: -time.Second, UDPIdle: time.Minute}, true, "--deadline"},
		{"huge --deadline", EndFlags{Forward: "udp:53", Deadline: 2 * time.Hour, UDPIdle: time.Minute}, false, "--deadline"},
		{"zero --udp-idle", EndFlags{Forward: "udp:53"}, true, "--udp-idle"},
		{"--once", func() EndFlags { f := udpFlags("udp:53"); f.Once = true; return f }(), false, "--once"},
		{"connect --socks", func() EndFlags { f := udpFlags("udp:53"); f.Socks = "1080"; return f }(), true, "--socks"},
		{"listen --socks", func() EndFlags { f := udpFlags("udp:53"); f.SocksExit = true; return f }(), false, "--socks"},
		{"listen --to", func() EndFlags { f := udpFlags("udp:53"); f.To = []string{"*"}; return f }(), false, "--to"},
		{"--deadline without udp", func() EndFlags { f := udpFlags("53"); f.UDPSet = true; return f }(), true, "--forward=udp:"},
		{"bad udp target", udpFlags("udp:x:y:z"), false, "--forward"},
	}
	for _, tt := range refused {
		var err error
		if tt.connect {
			_, err = tt.f.ConnectEnd()
		} else {
			_, err = tt.f.ListenEnd(true)
		}
		var ue *UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want a usage error containing %q", tt.name, err, tt.want)
		}
	}
	l, err := udpFlags("udp:10.0.0.1:53").ListenEnd(false)
	if err != nil || l.UDP == nil || l.UDPTarget != "10.0.0.1:53" || l.Stdio() || l.ConnectFlag() != "--forward=udp:10053 " {
		t.Fatalf("listen: %+v, %v (connect flag %q)", l, err, l.ConnectFlag())
	}
	if l.UDP.Deadline != 200*time.Millisecond || l.UDP.Idle != time.Minute {
		t.Fatalf("listen flows %+v", l.UDP)
	}
	f := udpFlags("udp:0")
	f.Deadline = 0
	c, err := f.ConnectEnd()
	if err == nil {
		t.Fatalf("udp:0 accepted: %+v", c)
	}
	f.Forward = "udp:127.0.0.1:1"
	if c, err = f.ConnectEnd(); err != nil || c.UDP == nil || c.UDPAddr != "127.0.0.1:1" || c.UDP.Deadline >= 0 {
		t.Fatalf("connect --deadline=0: %+v, %v (want no deadline)", c, err)
	}
}

// TestUDPFlagsWith: the flags' defaults, and UDPSet once either is given.
func TestUDPFlagsWith(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.String("forward", "", "where")
	var u UDPFlags
	u.AddFlags(fs)
	if e := u.With(EndFlags{}); e.Deadline != 200*time.Millisecond || e.UDPIdle != time.Minute || e.UDPSet {
		t.Fatalf("defaults: %+v", e)
	}
	if err := fs.Parse([]string{"--udp-idle=5s"}); err != nil {
		t.Fatal(err)
	}
	if e := u.With(EndFlags{}); e.UDPIdle != 5*time.Second || !e.UDPSet {
		t.Fatalf("after --udp-idle=5s: %+v", e)
	}
	if !strings.Contains(fs.Lookup("forward").Usage, "udp:") {
		t.Fatal("--forward's usage does not mention udp:")
	}
}

// TestConnectEndListenUDP: a UDP port in use is an error that says so.
func TestConnectEndListenUDP(t *testing.T) {
	taken, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	e, err := udpFlags("udp:" + taken.LocalAddr().String()).ConnectEnd()
	if err != nil {
		t.Fatal(err)
	}
	if pc, err := e.listenUDP(context.Background()); err == nil || !strings.Contains(err.Error(), "in use") {
		if pc != nil {
			pc.Close()
		}
		t.Fatalf("listenUDP on %s: %v", taken.LocalAddr(), err)
	}
}
