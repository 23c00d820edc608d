package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/servald/servald/identity"
	instpkg "github.com/servald/servald/instance"
	"github.com/servald/servald/probe"
)

// decodeStrict decodes the whole of out, one JSON document, into v,
// refusing a field v does not have and anything after the document.
func decodeStrict(t *testing.T, what, out string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v in stdout %q", what, err, out)
	}
	if dec.More() || strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "}\n") {
		t.Fatalf("%s: stdout %q is not one JSON object on one line", what, out)
	}
}

// jsonQueries runs id self, id peers, route print and service find with
// --json in the instance inst returns (a fresh one each time, as a node
// that comes back at once from another UDP port under the same SID is
// not heard for a few seconds; with extra node options) and checks each
// document against the listener l, which offers service echo on MDP port
// 5000 and is one hop away.
func jsonQueries(t *testing.T, inst func() string, l *listener, extra ...string) {
	t.Helper()
	run := func(args ...string) string {
		t.Helper()
		args = append(args, "--json", "--instance", inst())
		if args[1] != "self" {
			args = append(args, extra...)
		}
		code, out, errOut := runOnce(t, nil, args...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", strings.Join(args, " "), code, errOut)
		}
		return out
	}
	var self instpkg.SelfJSON
	decodeStrict(t, "id self", run("id", "self"), &self)
	if self.SID.IsZero() || self.SID.String() == l.sid {
		t.Fatalf("id self: sid %s", self.SID)
	}
	// The listener is the only neighbour; earlier commands' nodes may
	// still be routes through it.
	var peers instpkg.PeersJSON
	decodeStrict(t, "id peers", run("id", "peers"), &peers)
	if p := peers.Peers; len(p) == 0 || p[0].SID.String() != l.sid || p[0].Via != p[0].SID || p[0].Hops != 1 || p[0].Metric < 256 {
		t.Fatalf("id peers: %+v, want first the listener %s at 1 hop", peers, l.sid)
	}
	var routes instpkg.RoutesJSON
	decodeStrict(t, "route print", run("route", "print"), &routes)
	r := routes.Routes
	if len(r) == 0 || r[0].SID.String() != l.sid || r[0].NextHop != r[0].SID || r[0].Hops != 1 || r[0].Metric < 256 || r[0].MTU <= 0 {
		t.Fatalf("route print: routes %+v, want first the listener %s, 1 hop", r, l.sid)
	}
	nb := routes.Neighbours
	if len(nb) != 1 || nb[0].SID.String() != l.sid || nb[0].Addr != l.udp || nb[0].MTU <= 0 || nb[0].SRTTus <= 0 || nb[0].LossPct < 0 || nb[0].LossPct > 100 {
		// Loss is not asserted 0: on a loaded machine a timer fires before an
		// ACK is read, and the resend counts as loss even on loopback.
		t.Fatalf("route print: neighbours %+v, want the listener %s (UDP %s) alone", nb, l.sid, l.udp)
	}
	var services instpkg.ServicesJSON
	decodeStrict(t, "service find", run("service", "find", "echo"), &services)
	if len(services.Services) != 1 || services.Services[0] != (instpkg.ServiceJSON{SID: mustSID(t, l.sid), Name: "echo", Port: 5000, Hops: 1}) {
		t.Fatalf("service find: %+v, want echo at %s port 5000, 1 hop", services, l.sid)
	}
}

func mustSID(t *testing.T, s string) identity.SID {
	t.Helper()
	sid, err := identity.ParseSID(s)
	if err != nil {
		t.Fatal(err)
	}
	return sid
}

// TestJSONQueries: id self, id peers, route print and service find with
// --json each print one document that decodes, with no unknown field,
// into the type README.md documents, and says what the mesh holds: with
// a node embedded in the command, and through a daemon. Without an
// answer, service find --json prints nothing and one line on stderr.
func TestJSONQueries(t *testing.T) {
	t.Parallel()
	echo := echoServer(t).Addr().String()
	l := startListen(t, nil, nil, "--service=echo", "--forward", echo, "5000")
	t.Run("embedded", func(t *testing.T) {
		jsonQueries(t, func() string { return instance(t) }, l, "--udp", "127.0.0.1:0", "--peer", l.udp)
	})
	t.Run("daemon", func(t *testing.T) {
		l := startListen(t, nil, nil, "--service=echo", "--forward", echo, "5000")
		inst := instance(t)
		startDaemon(t, inst, "--peer", l.udp)
		eventually(t, 10*time.Second, func() string {
			if code, out, _ := runOnce(t, nil, "id", "peers", "--instance", inst); code != 0 || !strings.Contains(out, l.sid) {
				return "the daemon has no route to the listener"
			}
			return ""
		})
		jsonQueries(t, func() string { return inst }, l)
	})
	t.Run("no answer", func(t *testing.T) {
		code, out, errOut := runOnce(t, nil, "service", "find", "nothing", "--json", "--instance", instance(t), "--udp", "127.0.0.1:0", "--peer", l.udp, "--timeout", "500ms")
		if code != 1 || out != "" {
			t.Errorf("exit %d, stdout %q; want 1 and nothing", code, out)
		}
		oneLine(t, errOut, "no node answered for nothing")
	})
	t.Run("dot and json", func(t *testing.T) {
		code, out, errOut := runOnce(t, nil, "route", "print", "--dot", "--json", "--instance", instance(t), "--udp", "127.0.0.1:0")
		if code != 2 || out != "" {
			t.Errorf("exit %d, stdout %q; want 2 and nothing", code, out)
		}
		oneLine(t, errOut, "exclusive")
	})
}

// jsonFields lists the JSON names of t's fields, those of the elements
// of a slice field as NAME[].FIELD.
func jsonFields(t reflect.Type, prefix string) []string {
	var out []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		out = append(out, prefix+name)
		if f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct {
			out = append(out, jsonFields(f.Type.Elem(), prefix+name+"[].")...)
		}
	}
	return out
}

// marshalledFields lists the names of the JSON object v marshals to.
func marshalledFields(t *testing.T, v any) []string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// readmeJSONTables reads the tables of README.md's "JSON output" section:
// for each caption (a line "`servald ...`[, what]:" before a table, read
// without its backquotes), the field names in its first column.
func readmeJSONTables(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := bytes.Cut(b, []byte("\n## JSON output\n"))
	if !ok {
		t.Fatal("README.md has no section ## JSON output")
	}
	if i := bytes.Index(sec, []byte("\n## ")); i >= 0 {
		sec = sec[:i]
	}
	caption := regexp.MustCompile("^(`servald [^`]+`[^:`]*):$")
	row := regexp.MustCompile("^\\| `([^`]+)` \\|")
	tables := map[string][]string{}
	cur := ""
	sc := bufio.NewScanner(bytes.NewReader(sec))
	for sc.Scan() {
		line := sc.Text()
		if m := caption.FindStringSubmatch(line); m != nil {
			cur = strings.ReplaceAll(m[1], "`", "")
			continue
		}
		if m := row.FindStringSubmatch(line); m != nil {
			if cur == "" {
				t.Fatalf("README.md: row %q before any caption", line)
			}
			tables[cur] = append(tables[cur], m[1])
		}
	}
	return tables
}

// TestJSONOutputDocumented: README.md's JSON output section has a table
// for every --json document and line, naming exactly the fields the code
// writes: those of package instance's types, and those ping and trace
// print (every field set, so that none is left out as empty).
func TestJSONOutputDocumented(t *testing.T) {
	sid := identity.SID{1}
	want := map[string][]string{
		"servald id self --json":                           jsonFields(reflect.TypeFor[instpkg.SelfJSON](), ""),
		"servald id peers --json":                          jsonFields(reflect.TypeFor[instpkg.PeersJSON](), ""),
		"servald route print --json":                       jsonFields(reflect.TypeFor[instpkg.RoutesJSON](), ""),
		"servald service find --json":                      jsonFields(reflect.TypeFor[instpkg.ServicesJSON](), ""),
		"servald ping --json, a line per reply":            marshalledFields(t, probe.Reply{Seq: 1, From: sid, Size: 64, Hops: 1, RTT: time.Millisecond, Dup: true}),
		"servald ping --json, a line per request not sent": marshalledFields(t, probe.Reply{Seq: 1, Err: fmt.Errorf("no route")}),
		"servald ping --json, the last line":               marshalledFields(t, probe.Summary{To: sid, Sent: 2, Received: 1, Duplicates: 1, Errors: 1, Min: 1, Avg: 1, Max: 1, Mdev: 1, Time: 1}),
		"servald trace --json, a line per hop":             marshalledFields(t, probe.Hop{N: 1, SID: sid, Addr: "127.0.0.1:1", RTT: 1, Hops: 1, Lost: true}),
	}
	got := readmeJSONTables(t)
	for caption, fields := range want {
		slices.Sort(fields)
		doc := slices.Sorted(slices.Values(got[caption]))
		if !slices.Equal(doc, fields) {
			t.Errorf("README.md, JSON output, table `%s`: fields %q, the code writes %q", caption, doc, fields)
		}
	}
	for caption := range got {
		if _, ok := want[caption]; !ok {
			t.Errorf("README.md, JSON output: table `%s` is not checked here", caption)
		}
	}
}
