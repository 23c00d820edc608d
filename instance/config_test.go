package instance

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "servald.conf")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigFile(t *testing.T) {
	good := writeConfig(t, "# a node\n\nudp = 127.0.0.1:4999\npeer = 127.0.0.1:5001\n  peer=127.0.0.1:5002  \nbroadcast = eth0,eth1\n")
	for _, tc := range []struct {
		name  string
		o     NodeOptions
		given []string
		want  NodeOptions
	}{
		{"file fills all", NodeOptions{UDP: "0.0.0.0:4110"}, nil,
			NodeOptions{UDP: "127.0.0.1:4999", Peers: []string{"127.0.0.1:5001", "127.0.0.1:5002"}, Broadcast: []string{"eth0", "eth1"}}},
		{"flags win", NodeOptions{UDP: "127.0.0.1:7", Peers: []string{"127.0.0.1:8"}, Broadcast: []string{"*"}}, []string{"udp", "peer", "broadcast"},
			NodeOptions{UDP: "127.0.0.1:7", Peers: []string{"127.0.0.1:8"}, Broadcast: []string{"*"}}},
		{"only udp given", NodeOptions{UDP: "127.0.0.1:7"}, []string{"udp"},
			NodeOptions{UDP: "127.0.0.1:7", Peers: []string{"127.0.0.1:5001", "127.0.0.1:5002"}, Broadcast: []string{"eth0", "eth1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			o.Config = good
			o.Given = func(name string) bool { return strings.Contains(strings.Join(tc.given, " "), name) }
			got, err := o.withConfig("")
			if err != nil {
				t.Fatal(err)
			}
			if got.UDP != tc.want.UDP || !reflect.DeepEqual(got.Peers, tc.want.Peers) || !reflect.DeepEqual(got.Broadcast, tc.want.Broadcast) {
				t.Errorf("got udp %q peers %q broadcast %q, want %q %q %q", got.UDP, got.Peers, got.Broadcast, tc.want.UDP, tc.want.Peers, tc.want.Broadcast)
			}
		})
	}
	o := NodeOptions{Config: good, Peers: []string{"127.0.0.1:1"}}
	if _, err := o.withConfig(""); err != nil || len(o.Peers) != 1 {
		t.Errorf("withConfig changed the caller's peers: %q (%v)", o.Peers, err)
	}
}

func TestConfigFileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
		usage            bool
	}{
		{"no equals", "udp = 127.0.0.1:1\nnonsense\n", ":2: want 'key = value'", true},
		{"empty value", "peer =\n", ":1: want 'key = value'", true},
		{"unknown key", "# c\nport = 5\n", `:2: unknown key "port"`, true},
		{"bad peer", "peer = nohostport\n", `--peer "nohostport": want HOST:PORT`, true},
		{"peer port 0", "peer = 127.0.0.1:0\n", `--peer "127.0.0.1:0": port 0`, true},
		{"bad udp", "udp = 4110\n", `--udp "4110": want HOST:PORT`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeConfig(t, tc.text)
			err := NodeOptions{UDP: "127.0.0.1:0", Config: p}.Check("")
			var ue *UsageError
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.As(err, &ue) != tc.usage {
				t.Fatalf("Check = %v, want an error containing %q (usage error: %v)", err, tc.want, tc.usage)
			}
			if strings.HasPrefix(tc.want, ":") && !strings.HasPrefix(err.Error(), "config "+p+tc.want) {
				t.Errorf("error %q does not name the file and line", err)
			}
		})
	}
	missing := filepath.Join(t.TempDir(), "none.conf")
	err := NodeOptions{UDP: "127.0.0.1:0", Config: missing}.Check("")
	var ue *UsageError
	if err == nil || !errors.Is(err, os.ErrNotExist) || errors.As(err, &ue) || !strings.HasPrefix(err.Error(), "config: ") {
		t.Errorf("missing file: %v, want a config: error (not a usage error) wrapping ErrNotExist", err)
	}
	if _, err := Open(t.TempDir(), NodeOptions{UDP: "127.0.0.1:0", Config: missing}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open with a missing config file: %v", err)
	}
	if err := (NodeOptions{UDP: "127.0.0.1:0", Broadcast: []string{"no-such-iface0"}}).Check(""); err != nil {
		t.Errorf("Check looks at interfaces: %v", err)
	}
	if _, err := StartNode(t.TempDir(), NodeOptions{UDP: "127.0.0.1:0", Broadcast: []string{"no-such-iface0"}}); !errors.As(err, &ue) || !strings.Contains(err.Error(), "no interface named no-such-iface0") {
		t.Errorf("StartNode with an unknown interface: %v", err)
	}
}

// TestInstanceConfig: DIR/config is read when present (comments allowed,
// also after a value); --config, when given, is read instead.
func TestInstanceConfig(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte("# this node\nudp = 127.0.0.1:0 # any port\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// "not an address" fails unless the file supplies udp.
	m, err := Open(dir, NodeOptions{UDP: "not an address"})
	if err != nil {
		t.Fatalf("Open with DIR/config: %v", err)
	}
	m.Close()
	other := writeConfig(t, "udp = also not an address\n")
	if err := (NodeOptions{UDP: "127.0.0.1:0", Config: other}).Check(dir); err == nil || !strings.Contains(err.Error(), "also not an address") {
		t.Errorf("--config and DIR/config: %v, want --config read instead", err)
	}
}
