package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/servald/servald/daemon"
)

// statusJSON runs `servald status --json` in inst and decodes it.
func statusJSON(t *testing.T, inst string) daemon.StatusSnapshot {
	t.Helper()
	code, out, errOut := runOnce(t, nil, "status", "--json", "--instance", inst)
	if code != 0 {
		t.Fatalf("status --json: exit %d: %s", code, errOut)
	}
	var snap daemon.StatusSnapshot
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&snap); err != nil {
		t.Fatalf("status --json: %v:\n%s", err, out)
	}
	if dec.More() {
		t.Fatalf("status --json printed more than one document:\n%s", out)
	}
	return snap
}

// pollStatus runs `status --json` in inst until ok accepts it (at most 15 s).
func pollStatus(t *testing.T, inst, what string, ok func(daemon.StatusSnapshot) bool) daemon.StatusSnapshot {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		snap := statusJSON(t, inst)
		if ok(snap) {
			return snap
		}
		if time.Now().After(deadline) {
			b, _ := json.MarshalIndent(snap, "", "  ")
			t.Fatalf("status of %s never showed %s:\n%s", inst, what, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// tunnelOn returns the tunnel reported on port, if any.
func tunnelOn(snap daemon.StatusSnapshot, port uint16) (daemon.Report, bool) {
	for _, r := range snap.Tunnels {
		if r.Port == port {
			return r, true
		}
	}
	return daemon.Report{}, false
}

// neighbourIn returns snap's neighbour sid.
func neighbourIn(snap daemon.StatusSnapshot, sid string) (daemon.NeighbourStatus, bool) {
	for _, nb := range snap.Neighbours {
		if nb.SID.String() == sid {
			return nb, true
		}
	}
	return daemon.NeighbourStatus{}, false
}

// echoRound writes size random bytes to c and reads them back.
func echoRound(c net.Conn, size int) error {
	data := make([]byte, size)
	rand.Read(data)
	errc := make(chan error, 1)
	go func() { _, err := c.Write(data); errc <- err }()
	back := make([]byte, size)
	c.SetReadDeadline(time.Now().Add(time.Minute))
	if _, err := io.ReadFull(c, back); err != nil {
		return err
	}
	if err := <-errc; err != nil {
		return err
	}
	if !bytes.Equal(back, data) {
		return fmt.Errorf("echo: %d bytes back differ", size)
	}
	return nil
}

// TestStatusJSONGrows is issue 11's "status --json shows growing byte
// counters", with real processes: daemons A and B peered on loopback, msp
// listen --service in A and msp connect in B, one connection held open
// through the tunnel. Both daemons' status --json show the neighbour, the
// tunnel (role, port, target, pid, connections 1) and its session (the
// right peer and ports); after more data, the neighbour's bytes and the
// session's bytes have grown and the byte rate is not zero.
func TestStatusJSONGrows(t *testing.T) {
	t.Parallel()
	none := instance(t)
	if code, out, errOut := runOnce(t, nil, "status", "--json", "--instance", none); code != 1 || out != "" {
		t.Errorf("status --json without a daemon: exit %d, stdout %q, stderr %q; want exit 1, nothing on stdout", code, out, errOut)
	}
	a := startDaemon(t, instance(t))
	b := startDaemon(t, instance(t), "--peer", a.udp)
	echo := echoServer(t)
	_, echoPort, _ := net.SplitHostPort(echo.Addr().String())
	lis := start(t, nil, nil, "msp", "listen", "--instance", a.inst, "--service", "echo", "--forward", echoPort, "5000")
	lis.waitLine(`listening as ` + a.sid + ` on MDP port 5000`)
	local := freePort(t)
	con := start(t, nil, nil, "msp", "connect", "--instance", b.inst, "--forward", strconv.Itoa(local), a.sid, "5000")
	con.waitLine("forwarding TCP")
	c := dialRetry(t, fmt.Sprintf("127.0.0.1:%d", local))
	defer c.Close()
	if err := echoRound(c, 256<<10); err != nil {
		t.Fatal(err)
	}

	// A: the listener's tunnel with one connection and B's session.
	first := pollStatus(t, a.inst, "the listener with one connection", func(s daemon.StatusSnapshot) bool {
		r, ok := tunnelOn(s, 5000)
		return ok && r.Connections == 1 && len(r.Sessions) == 1 && r.Sessions[0].BytesReceived >= 256<<10
	})
	r, _ := tunnelOn(first, 5000)
	if r.Role != daemon.RoleService || r.Service != "echo" || r.Target != echo.Addr().String() || r.PID != lis.cmd.Process.Pid {
		t.Errorf("A's tunnel: role %q service %q target %q pid %d; want service, echo, %s, pid %d", r.Role, r.Service, r.Target, r.PID, echo.Addr(), lis.cmd.Process.Pid)
	}
	s1 := r.Sessions[0]
	if s1.Peer.String() != b.sid || s1.LocalPort != 5000 || s1.Initiator || !strings.HasPrefix(s1.Remote, b.sid+":") || s1.Streams != 1 {
		t.Errorf("A's session %+v: want peer B %s, local port 5000, not the initiator, remote B:port, 1 stream", s1, b.sid)
	}
	if first.Node.SID.String() != a.sid || first.Node.PID != a.pid || len(first.Node.UDP) != 1 || first.Node.UDP[0] != a.udp || !strings.Contains(first.Node.Version, "go1.") {
		t.Errorf("A's node block %+v: want SID %s pid %d UDP %s and a version", first.Node, a.sid, a.pid, a.udp)
	}
	nb1, ok := neighbourIn(first, b.sid)
	if !ok || nb1.BytesIn < 256<<10 || nb1.BytesOut < 256<<10 || nb1.FramesIn == 0 || nb1.RTTus <= 0 || nb1.MTU <= 0 {
		t.Fatalf("A's neighbour B %+v (found %v): want at least the 256 KiB each way, frames, an RTT and an MTU", nb1, ok)
	}

	// B: the connecting tunnel, to A's port 5000.
	bs := pollStatus(t, b.inst, "the connecting tunnel", func(s daemon.StatusSnapshot) bool {
		for _, r := range s.Tunnels {
			if r.Role == daemon.RoleConnect && r.Connections == 1 && len(r.Sessions) == 1 {
				return true
			}
		}
		return false
	})
	for _, r := range bs.Tunnels {
		s := r.Sessions[0]
		if r.Target != a.sid+":5000" || s.Peer.String() != a.sid || s.Remote != a.sid+":5000" || !s.Initiator || s.LocalPort != r.Port || r.PID != con.cmd.Process.Pid {
			t.Errorf("B's tunnel %+v: want target and remote %s:5000, the initiator on its own port, pid %d", r, a.sid, con.cmd.Process.Pid)
		}
	}

	// More data, kept flowing while A's status is asked again.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var pumpErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if pumpErr = echoRound(c, 64<<10); pumpErr != nil {
				return
			}
		}
	}()
	second := pollStatus(t, a.inst, "grown counters and a byte rate", func(s daemon.StatusSnapshot) bool {
		r, ok := tunnelOn(s, 5000)
		nb, nok := neighbourIn(s, b.sid)
		return ok && len(r.Sessions) == 1 && r.Sessions[0].BytesReceived > s1.BytesReceived+(256<<10) &&
			nok && nb.RateIn > 0 && nb.RateOut > 0
	})
	close(stop)
	wg.Wait()
	if pumpErr != nil {
		t.Fatal(pumpErr)
	}
	nb2, _ := neighbourIn(second, b.sid)
	r2, _ := tunnelOn(second, 5000)
	s2 := r2.Sessions[0]
	t.Logf("A's neighbour B: in %d → %d bytes, out %d → %d; %.0f B/s in, %.0f B/s out; session received %d → %d, sent %d → %d",
		nb1.BytesIn, nb2.BytesIn, nb1.BytesOut, nb2.BytesOut, nb2.RateIn, nb2.RateOut, s1.BytesReceived, s2.BytesReceived, s1.BytesSent, s2.BytesSent)
	if nb2.BytesIn <= nb1.BytesIn+(256<<10) || nb2.BytesOut <= nb1.BytesOut+(256<<10) || nb2.FramesIn <= nb1.FramesIn {
		t.Errorf("A's neighbour counters did not grow with the data: %+v then %+v", nb1, nb2)
	}
	if s2.BytesSent <= s1.BytesSent || s2.Peer != s1.Peer || r2.Connections != 1 {
		t.Errorf("A's session did not grow: %+v then %+v (connections %d)", s1, s2, r2.Connections)
	}
	if second.Node.UptimeS <= first.Node.UptimeS || second.Node.FramesIn <= first.Node.FramesIn {
		t.Errorf("A's node block did not move: %+v then %+v", first.Node, second.Node)
	}

	// The same, for a person.
	code, out, errOut := runOnce(t, nil, "status", "--instance", a.inst)
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, errOut)
	}
	t.Logf("status of A:\n%s", out)
	for _, re := range []string{
		`(?m)^running$`, `(?m)^SID: ` + a.sid + `$`, `(?m)^version: .*go1\.`,
		`(?m)^NEIGHBOUR +ADDRESS +RTT +LOSS OUT +LOSS IN +MTU +IN/s +OUT/s +IN +OUT$`,
		`(?m)^` + b.sid[:8] + ` +127\.0\.0\.1:\d+ +\S+ +\d+\.\d% +\d+\.\d% +\d+ `,
		`(?m)^service +5000 +` + strconv.Itoa(lis.cmd.Process.Pid) + ` +echo +` + regexp.QuoteMeta(echo.Addr().String()) + ` +1 +1$`,
		`(?m)^5000 +` + b.sid[:8] + ` +port \d+ +1 +`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("status output does not match %s:\n%s", re, out)
		}
	}

	// The tunnel is forgotten once its process is gone.
	con.cmd.Process.Kill()
	con.wait(10 * time.Second)
	pollStatus(t, b.inst, "no tunnel after msp connect ended", func(s daemon.StatusSnapshot) bool { return len(s.Tunnels) == 0 })
}
