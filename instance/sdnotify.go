package instance

// Readiness for systemd (Type=notify): the sd_notify datagram protocol,
// spoken directly: one datagram of "KEY=VALUE" lines to the Unix socket
// named by $NOTIFY_SOCKET (a leading '@' names an abstract socket).

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// NotifySocketEnv names the socket systemd listens on for notifications.
const NotifySocketEnv = "NOTIFY_SOCKET"

// SystemdNotify sends state ("READY=1", "STOPPING=1", ...) to the service
// manager that started this process, when one asked ($NOTIFY_SOCKET
// set); without it, it does nothing and returns nil.
func SystemdNotify(state string) error {
	path := os.Getenv(NotifySocketEnv)
	if path == "" {
		return nil
	}
	if strings.HasPrefix(path, "@") {
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}
