package instance

// The node options: the config file, which fills what the command line did
// not give, and the checks and address lookups of the options.

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/servald/servald/identity"
)

// BroadcastAll in NodeOptions.Broadcast stands for every broadcast-capable
// interface.
const BroadcastAll = "*"

// ConfigFile is the config file of an instance directory, read when
// present unless NodeOptions.Config names another.
const ConfigFile = "config"

// withConfig returns o completed from its config file (o.Config, else
// instance dir's ConfigFile when present), which has lines 'udp = ADDR',
// 'peer = HOST:PORT' (repeatable) and 'broadcast = IFACE,...', blank lines
// and comments ('#' to the end of the line). Options that o.Given reports win over the file.
// A malformed line is a *UsageError.
func (o NodeOptions) withConfig(dir string) (NodeOptions, error) {
	if o.Config == "" && dir != "" {
		p := filepath.Join(dir, ConfigFile)
		if _, err := os.Stat(p); err == nil {
			o.Config = p
		}
	}
	if o.Config == "" {
		return o, nil
	}
	f, err := os.Open(o.Config)
	if err != nil {
		return o, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	given := o.Given
	if given == nil {
		given = func(string) bool { return false }
	}
	o.Peers = append([]string(nil), o.Peers...)
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		t, _, _ := strings.Cut(sc.Text(), "#")
		if t = strings.TrimSpace(t); t == "" {
			continue
		}
		k, v, ok := strings.Cut(t, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || v == "" {
			return o, usagef("config %s:%d: want 'key = value'", o.Config, line)
		}
		switch k {
		case "udp":
			if !given("udp") {
				o.UDP = v
			}
		case "peer":
			if !given("peer") {
				o.Peers = append(o.Peers, v)
			}
		case "broadcast":
			if !given("broadcast") {
				o.Broadcast = strings.Split(v, ",")
			}
		default:
			return o, usagef("config %s:%d: unknown key %q", o.Config, line, k)
		}
	}
	return o, sc.Err()
}

// PeersIn returns the peers a node of instance dir started with o links
// with: o.Peers and, unless o.Given("peer"), the config file's (o.Peers
// alone when the file cannot be read).
func (o NodeOptions) PeersIn(dir string) []string {
	c, err := o.withConfig(dir)
	if err != nil {
		return o.Peers
	}
	return c.Peers
}

// validate checks the UDP address and resolves the peers' addresses.
func (o NodeOptions) validate() ([]net.Addr, error) {
	var peers []net.Addr
	for _, p := range o.Peers {
		if _, _, err := net.SplitHostPort(p); err != nil {
			return nil, usagef("--peer %q: want HOST:PORT", p)
		}
		a, err := net.ResolveUDPAddr("udp", p)
		if err != nil {
			return nil, usagef("--peer %q: %v", p, err)
		}
		if a.Port == 0 {
			return nil, usagef("--peer %q: port 0", p)
		}
		peers = append(peers, a)
	}
	if _, _, err := net.SplitHostPort(o.UDP); err != nil {
		return nil, usagef("--udp %q: want HOST:PORT", o.UDP)
	}
	return peers, nil
}

// broadcastAddrs computes the IPv4 broadcast address of each interface
// named (BroadcastAll: every one that can), at UDP port.
func broadcastAddrs(names []string, port int) ([]net.Addr, error) {
	if len(names) == 0 {
		return nil, nil
	}
	want := map[string]bool{}
	all := false
	for _, name := range names {
		if name == BroadcastAll || name == "" {
			all = true
		} else {
			want[name] = true
		}
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("--broadcast: %w", err)
	}
	var out []net.Addr
	found := map[string]bool{}
	for _, ifc := range ifs {
		if !all && !want[ifc.Name] {
			continue
		}
		found[ifc.Name] = true
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagBroadcast == 0 {
			if !all {
				return nil, usagef("--broadcast: interface %s is down or cannot broadcast", ifc.Name)
			}
			continue
		}
		out = append(out, ifaceBroadcast(ifc, port)...)
	}
	for name := range want {
		if !found[name] {
			return nil, usagef("--broadcast: no interface named %s", name)
		}
	}
	if len(out) == 0 {
		return nil, usagef("--broadcast: no IPv4 broadcast address on the chosen interfaces")
	}
	return out, nil
}

// ifaceBroadcast returns the IPv4 broadcast addresses of ifc at port.
func ifaceBroadcast(ifc net.Interface, port int) []net.Addr {
	addrs, err := ifc.Addrs()
	if err != nil {
		return nil
	}
	var out []net.Addr
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.To4() == nil {
			continue
		}
		ip, mask := ipn.IP.To4(), ipn.Mask
		if len(mask) == net.IPv6len {
			mask = mask[12:]
		}
		bc := make(net.IP, 4)
		for i := range bc {
			bc[i] = ip[i] | ^mask[i]
		}
		out = append(out, &net.UDPAddr{IP: bc, Port: port})
	}
	return out
}

// TrustedFile is the file in an instance directory that closes its mesh:
// one full SID per line, '#' starts a comment (see NodeOptions.Trust).
const TrustedFile = "trusted"

// trusted is the SIDs of --trust and of dir's trusted file, if any.
func trusted(dir string, flags []string) ([]identity.SID, error) {
	var out []identity.SID
	for _, s := range flags {
		sid, err := identity.ParseSID(s)
		if err != nil {
			return nil, usagef("--trust %q: want a full SID (64 hex digits): a prefix could be ground", s)
		}
		out = append(out, sid)
	}
	path := filepath.Join(dir, TrustedFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("trusted SIDs: %w", err)
	}
	for i, line := range strings.Split(string(b), "\n") {
		if c, _, ok := strings.Cut(line, "#"); ok {
			line = c
		}
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		sid, err := identity.ParseSID(line)
		if err != nil {
			return nil, usagef("%s:%d: %q is not a full SID (64 hex digits)", path, i+1, line)
		}
		out = append(out, sid)
	}
	return out, nil
}
