package instance

import (
	"net"
	"path/filepath"
	"testing"
	"time"
)

// TestSystemdNotify: the state arrives as one datagram on $NOTIFY_SOCKET
// (a path, and an abstract name); without the variable nothing is sent.
func TestSystemdNotify(t *testing.T) {
	t.Setenv(NotifySocketEnv, "")
	if err := SystemdNotify("READY=1"); err != nil {
		t.Fatalf("without %s: %v", NotifySocketEnv, err)
	}
	abstract := "@servald-test-" + filepath.Base(t.TempDir())
	for _, name := range []string{filepath.Join(t.TempDir(), "notify"), abstract} {
		listen := name
		if name[0] == '@' {
			listen = "\x00" + name[1:]
		}
		c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: listen, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		t.Setenv(NotifySocketEnv, name)
		if err := SystemdNotify("READY=1\nMAINPID=7"); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 100)
		n, err := c.Read(b)
		if err != nil || string(b[:n]) != "READY=1\nMAINPID=7" {
			t.Errorf("%s: got %q, %v", name, b[:n], err)
		}
	}
}
