package instance

import (
	"context"
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
// --udp-idle on both sides (its mistakes are in TestEndFlagsRefused).
func TestUDPEndFlags(t *testing.T) {
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
