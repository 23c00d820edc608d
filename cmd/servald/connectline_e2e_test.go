package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestConnectLineVerbatim: the connect line msp listen prints, run as it
// is from another instance directory on this machine, connects: it names
// the listener's UDP address, binds any free UDP port of its own, and
// forwards a local port other than the listener's target.
func TestConnectLineVerbatim(t *testing.T) {
	t.Parallel()
	echo := echoServer(t)
	l := startListen(t, nil, nil, "--forward", echo.Addr().String(), "5000")
	m := l.waitLine(`connect with: servald (msp connect .*)$`)
	args := strings.Fields(m[1])
	fwd := ""
	for _, a := range args {
		if p, ok := strings.CutPrefix(a, "--forward="); ok {
			fwd = p
		}
	}
	if fwd == "" || strings.HasSuffix(echo.Addr().String(), ":"+fwd) {
		t.Fatalf("the connect line %q forwards %q: want a local port other than the target %s", m[1], fwd, echo.Addr())
	}
	cmd := exec.Command(servaldBin, args...)
	cmd.Env = append(os.Environ(), "SERVALINSTANCE_PATH="+instance(t))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	c := dialRetry(t, "127.0.0.1:"+fwd)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("verbatim\n")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 9)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "verbatim\n" {
		t.Fatalf("through the printed line: %q, %v; connect said: %s", got, err, stderr.String())
	}
}
