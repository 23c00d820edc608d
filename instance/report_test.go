package instance

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/servald/servald/daemon"
	"github.com/servald/servald/mesh"
	"github.com/servald/servald/msp"
)

// serveDaemon serves node n as the daemon of instance dir until the test
// ends.
func serveDaemon(t *testing.T, dir string, n *mesh.Node) *daemon.Server {
	t.Helper()
	srv, err := daemon.Listen(daemon.Config{Dir: dir, Node: n})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-served
		srv.Close()
	})
	return srv
}

// TestReportThroughDaemon: a listener and a dialled session of a process
// that reaches the mesh through the daemon show in its Snapshot, with
// their roles, targets, sessions and open streams.
func TestReportThroughDaemon(t *testing.T) {
	dir := t.TempDir()
	id, err := Identity(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, b := memPair(t, id, nil)
	srv := serveDaemon(t, dir, a)
	m, err := Open(dir, NodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	// A listener through the daemon, and a stream to it from b, held open.
	lis, err := Listen(m, 7, msp.Config{}, Shown{Service: "echo", Target: "127.0.0.1:22"})
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go echoListener(lis)
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	in, err := DialSession(dctx, Embed(b), a.SID(), 7, msp.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	held, err := in.OpenStream(dctx)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	held.Write([]byte("x"))

	// A session from the daemon's node to a listener on b.
	blis, err := Listen(Embed(b), 9, msp.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer blis.Close()
	go echoListener(blis)
	out, err := DialSession(dctx, m, b.SID(), 9, msp.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	st, err := out.OpenStream(dctx)
	if err != nil {
		t.Fatal(err)
	}
	echo(t, st, "out")

	deadline := time.Now().Add(10 * time.Second)
	for {
		var listen, connect *daemon.Report
		snap := srv.Snapshot()
		for i, r := range snap.Tunnels {
			switch r.Role {
			case daemon.RoleService:
				listen = &snap.Tunnels[i]
			case daemon.RoleConnect:
				connect = &snap.Tunnels[i]
			}
		}
		ok := listen != nil && connect != nil && listen.Connections == 1 && len(listen.Sessions) == 1 &&
			len(connect.Sessions) == 1 && connect.Sessions[0].BytesReceived >= 3
		if ok {
			ls, cs := listen.Sessions[0], connect.Sessions[0]
			if listen.Port != 7 || listen.Service != "echo" || listen.Target != "127.0.0.1:22" || ls.Peer != b.SID() || ls.LocalPort != 7 || ls.Initiator {
				t.Errorf("listener's report %+v", *listen)
			}
			if connect.Target != fmt.Sprintf("%s:9", b.SID()) || cs.Peer != b.SID() || !cs.Initiator || cs.LocalPort != connect.Port || connect.Port == 9 {
				t.Errorf("connector's report %+v", *connect)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tunnels %+v", snap.Tunnels)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
