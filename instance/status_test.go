package instance

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/servald/servald/daemon"
	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
	"github.com/servald/servald/msp"
)

func TestWriteStatus(t *testing.T) {
	sid := identity.SID{0xAB, 0xCD}
	peer := identity.SID{0x12, 0x34}
	snap := daemon.StatusSnapshot{
		Node: daemon.NodeStatus{SID: sid, PID: 42, UDP: []string{"127.0.0.1:4110"}, Version: "v1 (go1.26.8)", UptimeS: 3661.4, Neighbours: 1, Routes: 2},
		Neighbours: []daemon.NeighbourStatus{{SID: peer, Addr: "127.0.0.1:4111", MTU: 1180, RTTus: 1234,
			LossOut: 0.25, LossIn: 0.005, BytesIn: 3 << 20, BytesOut: 1536, RateIn: 2048, RateOut: 10}},
		Tunnels: []daemon.Report{{Role: daemon.RoleListen, Port: 5000, PID: 7, Target: "stdio", Connections: 1,
			Sessions: []msp.SessionInfo{{Peer: peer, Remote: peer.String() + ":32769", Streams: 1, BytesSent: 5 << 30, SRTTus: 2500}}, MoreSessions: 3}},
		TunnelsOmitted: 2,
		Drops:          daemon.DropCounters(mesh.Stats{BadMAC: 3, Replayed: 1, NoRoute: 9}, false),
	}
	var b strings.Builder
	if err := WriteStatus(&b, snap); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"running\nSID: " + sid.String() + "\npid: 42\nUDP: 127.0.0.1:4110\nversion: v1 (go1.26.8)\nuptime: 1h1m1s\nneighbours: 1\nroutes: 2\n",
		"12340000   127.0.0.1:4111  1.23ms  25.0%     0.5%     1180  2.0 KiB  10 B   3.0 MiB  1.5 KiB\n",
		"listen  5000  7    -        stdio   1            4\n",
		"(2 more tunnels not listed)\n",
		"5000        12340000  port 32769  1        5.0 GiB  0 B       2.5ms  0 B   0 B\n",
		"(3 more sessions not listed)\n",
		"drops:\n  auth: bad_mac 3, replayed 1\n  routing: no_route 9\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// oldDaemon answers on sock as a daemon that predates the snapshot
// request: status is answered, anything else refused as a bad request.
func oldDaemon(t *testing.T, sock string, sid identity.SID) {
	t.Helper()
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			var hdr [4]byte
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				c.Close()
				continue
			}
			body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
			io.ReadFull(c, body)
			var req struct{ Op string }
			json.Unmarshal(body[1:], &req)
			rep := map[string]any{"error": "daemon: malformed frame: unknown op " + strconv.Quote(req.Op), "code": "bad-request"}
			if req.Op == "status" {
				rep = map[string]any{"status": map[string]any{"proto": daemon.ProtocolVersion, "sid": sid, "pid": 99,
					"udp": "127.0.0.1:4110", "neighbours": 2, "routes": 3, "uptime_ms": 5000, "stats": mesh.Stats{BadMAC: 4}}}
			}
			b, _ := json.Marshal(rep)
			c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(1+len(b))), append([]byte{'R'}, b...)...))
			c.Close()
		}
	}()
}

// TestDaemonSnapshotOlderDaemon: a daemon without the snapshot request
// still gets its node block and drops shown.
func TestDaemonSnapshotOlderDaemon(t *testing.T) {
	dir, err := os.MkdirTemp("", "st") // short: a socket path has a limit
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sid := identity.SID{9}
	oldDaemon(t, daemon.SocketPath(dir), sid)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := daemon.Dial(ctx, daemon.SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Snapshot(ctx); err == nil {
		t.Fatal("the old daemon answered a snapshot")
	}
	snap, err := DaemonSnapshot(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	n := snap.Node
	if n.SID != sid || n.PID != 99 || n.UDP[0] != "127.0.0.1:4110" || n.Neighbours != 2 || n.Routes != 3 || n.UptimeS != 5 ||
		len(snap.Drops) != 1 || snap.Drops[0].Reason != "bad_mac" || snap.Drops[0].Count != 4 {
		t.Fatalf("snapshot from the plain status: %+v", snap)
	}
}
