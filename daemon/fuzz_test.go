package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
	"github.com/servald/servald/msp"
)

var fuzzSID = identity.SID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32}

// seedFrames are encoder outputs of every frame type.
func seedFrames() [][]byte {
	req := func(r request) []byte {
		r.V = ProtocolVersion
		b, _ := json.Marshal(r)
		return appendFrame(nil, frameRequest, b)
	}
	rep := func(r reply) []byte {
		b, _ := json.Marshal(r)
		return appendFrame(nil, frameReply, b)
	}
	sid := fuzzSID
	return [][]byte{
		req(request{Op: opStatus}),
		req(request{Op: opWait, SID: &sid, TimeoutMS: 10}),
		req(request{Op: opBind, Port: 7}),
		rep(reply{Status: &statusJSON{Proto: 1, SID: sid, PID: 1, UDP: "127.0.0.1:1"}}),
		rep(reply{Routes: routesToJSON([]mesh.Route{{SID: sid, NextHop: sid, Hops: 1, Metric: 256, MTU: 1232}})}),
		rep(reply{Neighbours: []neighbourJSON{{SID: sid, Addr: "127.0.0.1:9", MTU: 1232}}}),
		rep(reply{Bound: &boundJSON{SID: sid, Port: 7, MaxPayload: 1141}}),
		rep(reply{Error: "mesh: MDP port in use", Code: codePortInUse}),
		appendDatagram(nil, mesh.Addr{SID: sid, Port: 7}, []byte("payload")),
		appendTimed(nil, mesh.Addr{SID: sid, Port: 7}, 100*time.Millisecond, []byte("payload")),
		appendTimed(nil, mesh.Addr{SID: sid, Port: 7}, 0, nil),
		rep(reply{Bound: &boundJSON{SID: sid, Port: 7, MaxPayload: 1141, NoProgress: true, Timed: true}}),
		appendMTUQuery(nil, sid),
		appendNoProgress(nil, sid),
		appendMTU(nil, sid, 1141),
		appendWriteErr(nil, writeErr{SID: sid, Code: codeNoRoute, MaxPayload: 1141, Msg: "no route"}),
		req(request{Op: opSnapshot}),
		rep(reply{Snapshot: &StatusSnapshot{Node: NodeStatus{SID: sid, UDP: []string{"127.0.0.1:1"}},
			Neighbours: []NeighbourStatus{{SID: sid, Addr: "127.0.0.1:9", BytesIn: 9}},
			Tunnels:    []Report{{Role: RoleListen, Port: 7}}, Drops: []Drop{{"auth", "bad_mac", 1}}}}),
		mustReport(Report{Role: RoleListen, Target: "127.0.0.1:22", Connections: 1, Sessions: []msp.SessionInfo{{Peer: sid, Remote: "x:7", BytesSent: 5}}}),
		appendStopping(nil),
	}
}

func FuzzParseFrame(f *testing.F) {
	for _, s := range seedFrames() {
		f.Add(s)
		f.Add(append(s, s...))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, body, n, err := parseFrame(b, maxDataFrame)
		if err != nil || n == 0 {
			return
		}
		if n > len(b) || n != frameHeaderLen+1+len(body) {
			t.Fatalf("n %d, body %d, input %d", n, len(body), len(b))
		}
		if got := appendFrame(nil, typ, body); !bytes.Equal(got, b[:n]) {
			t.Fatalf("re-encoded %x, want %x", got, b[:n])
		}
		// Every body decoder takes whatever the frame holds.
		switch typ {
		case frameData:
			if a, p, err := parseDatagram(body); err == nil {
				if got := appendDatagram(nil, a, p); !bytes.Equal(got, b[:n]) {
					t.Fatalf("datagram re-encoded %x, want %x", got, b[:n])
				}
			}
		case frameTimed:
			checkTimed(t, body, b[:n])
		case frameMTUQuery:
			if sid, err := parseMTUQuery(body); err == nil && !bytes.Equal(appendMTUQuery(nil, sid), b[:n]) {
				t.Fatal("MTU query does not round-trip")
			}
		case frameNoProgress:
			if sid, err := parseNoProgress(body); err == nil && !bytes.Equal(appendNoProgress(nil, sid), b[:n]) {
				t.Fatal("no-progress report does not round-trip")
			}
		case frameMTU:
			if sid, max, err := parseMTU(body); err == nil && !bytes.Equal(appendMTU(nil, sid, max), b[:n]) {
				t.Fatal("MTU answer does not round-trip")
			}
		case frameWriteErr:
			if we, err := parseWriteErr(body); err == nil {
				if we2, err := parseWriteErr(appendWriteErr(nil, we)[frameHeaderLen+1:]); err != nil || we2 != we {
					t.Fatalf("write error does not round-trip: %+v, %+v, %v", we, we2, err)
				}
			}
		case frameRequest:
			if r, err := parseRequest(body); err == nil {
				if r.Op == opWait && (r.SID == nil || r.TimeoutMS <= 0) {
					t.Fatalf("accepted %+v", r)
				}
			}
		case frameReply:
			parseReply(body)
		case frameReport:
			checkReport(t, body)
		}
	})
}

// checkTimed: a TIMED body that parses re-encodes to frame.
func checkTimed(t *testing.T, body, frame []byte) {
	t.Helper()
	a, budget, p, err := parseTimed(body)
	if err != nil {
		return
	}
	if budget < 0 || budget%time.Microsecond != 0 || len(p) > mesh.MaxPayload {
		t.Fatalf("accepted budget %v, payload of %d bytes", budget, len(p))
	}
	if got := appendTimed(nil, a, budget, p); !bytes.Equal(got, frame) {
		t.Fatalf("timed datagram re-encoded %x, want %x", got, frame)
	}
}

// FuzzParseTimed: the TIMED frame's body decoder, on bodies alone.
func FuzzParseTimed(f *testing.F) {
	a := mesh.Addr{SID: fuzzSID, Port: 7}
	for _, s := range [][]byte{
		appendTimed(nil, a, 100*time.Millisecond, []byte("payload")),
		appendTimed(nil, a, 0, nil),
		appendTimed(nil, a, time.Hour, make([]byte, 1400)),
	} {
		f.Add(s[frameHeaderLen+1:])
	}
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, body []byte) {
		checkTimed(t, body, appendFrame(nil, frameTimed, body))
	})
}

// FuzzFrameReader feeds a stream through the buffered reader both sides use.
func FuzzFrameReader(f *testing.F) {
	var all []byte
	for _, s := range seedFrames() {
		f.Add(s)
		all = append(all, s...)
	}
	f.Add(all)
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := newFrameReader(bufio.NewReaderSize(bytes.NewReader(b), 16))
		total := 0
		for {
			_, body, err := fr.next(maxDataFrame)
			if err != nil {
				return
			}
			total += frameHeaderLen + 1 + len(body)
			if total > len(b) {
				t.Fatalf("read %d bytes of frames from %d", total, len(b))
			}
		}
	})
}

// FuzzReadReply: the client's decoding of control replies.
func FuzzReadReply(f *testing.F) {
	for _, s := range seedFrames() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := readReply(bytes.NewReader(b), "fuzz")
		var re *RemoteError
		if errors.As(err, &re) && re.Msg == "" {
			t.Fatal("remote error without a message")
		}
		if err == nil && rep.Error != "" {
			t.Fatal("error reply taken as success")
		}
	})
}

// FuzzServer sends arbitrary bytes to a running server: it answers or
// closes, never panics, and keeps serving.
func FuzzServer(f *testing.F) {
	for _, s := range seedFrames() {
		f.Add(s)
	}
	f.Add(append(seedFrames()[2], seedFrames()[8]...))
	f.Add(append(seedFrames()[2], seedFrames()[9]...))
	adv, _ := json.Marshal(request{V: ProtocolVersion, Op: opAdvertise, Service: "ssh", Port: 5000})
	f.Add(appendFrame(nil, frameRequest, adv))
	n := newNode(f)
	srv, _ := serve(f, n)
	f.Fuzz(func(t *testing.T, b []byte) {
		// A stop request would end the server for the inputs after it.
		if r, err := parseFirstRequest(b); err == nil && r.Op == opStop {
			return
		}
		rawExchange(t, srv.SocketPath(), b)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, srv.SocketPath())
	if err != nil {
		f.Fatalf("server gone after fuzzing: %v", err)
	}
	c.Close()
}

func parseFirstRequest(b []byte) (request, error) {
	typ, body, n, err := parseFrame(b, maxRequest)
	if err != nil || n == 0 || typ != frameRequest {
		return request{}, errors.New("no request")
	}
	return parseRequest(body)
}

// FuzzPort: a Port reading whatever a (bad) daemon sends after a bind.
func FuzzPort(f *testing.F) {
	for _, s := range seedFrames()[8:] {
		f.Add(s)
	}
	path := filepath.Join(f.TempDir(), "fake.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		f.Fatal(err)
	}
	defer ln.Close()
	bound, _ := json.Marshal(reply{Bound: &boundJSON{SID: fuzzSID, Port: 7, MaxPayload: 1141}})
	f.Fuzz(func(t *testing.T, b []byte) {
		c := &Client{path: path, ports: map[*Port]struct{}{}}
		defer c.Close()
		served := make(chan struct{})
		go func() {
			defer close(served)
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			fr := newFrameReader(bufio.NewReader(conn))
			if _, _, err := fr.next(maxRequest); err != nil {
				return
			}
			conn.Write(append(appendFrame(nil, frameReply, bound), b...))
			conn.(*net.UnixConn).CloseWrite()
			for { // until the client closes
				if _, _, err := fr.next(maxDataFrame); err != nil {
					return
				}
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p, err := c.Bind(ctx, 7)
		if err != nil {
			t.Fatal(err)
		}
		p.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 100)
		for {
			k, from, err := p.ReadFrom(buf)
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("ReadFrom: %v", err)
				}
				break
			}
			if k > len(buf) || from == nil {
				t.Fatalf("ReadFrom gave %d bytes from %v", k, from)
			}
			p.MaxPayload(fuzzSID)
			p.WriteTo([]byte("x"), from)
		}
		p.Close()
		<-served
	})
}
