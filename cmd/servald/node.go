package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/servald/servald/mesh"
)

// defaultUDP is where a node listens unless told otherwise.
const defaultUDP = "0.0.0.0:4110"

// nodeOptions are the options of every command that starts a node.
type nodeOptions struct {
	udp       string
	peers     []string
	broadcast []string
	config    string
}

const broadcastAll = "*"

func (o *nodeOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.udp, "udp", defaultUDP, "UDP address the node listens on")
	fs.StringArrayVar(&o.peers, "peer", nil, "HOST:PORT of a node to link with (repeatable)")
	fs.StringSliceVar(&o.broadcast, "broadcast", nil, "announce this node by LAN broadcast on these interfaces (all broadcast-capable ones when given without a list); off by default")
	fs.Lookup("broadcast").NoOptDefVal = broadcastAll
	fs.StringVar(&o.config, "config", "", "config file with lines 'udp = ADDR', 'peer = HOST:PORT', 'broadcast = IFACE,...'")
}

// loadConfig fills options not given on the command line from the config
// file: flags win over the file.
func (o *nodeOptions) loadConfig(fs *pflag.FlagSet) error {
	if o.config == "" {
		return nil
	}
	f, err := os.Open(o.config)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		k, v, ok := strings.Cut(t, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || v == "" {
			return usagef("config %s:%d: want 'key = value'", o.config, line)
		}
		switch k {
		case "udp":
			if !fs.Changed("udp") {
				o.udp = v
			}
		case "peer":
			if !fs.Changed("peer") {
				o.peers = append(o.peers, v)
			}
		case "broadcast":
			if !fs.Changed("broadcast") {
				o.broadcast = strings.Split(v, ",")
			}
		default:
			return usagef("config %s:%d: unknown key %q", o.config, line, k)
		}
	}
	return sc.Err()
}

// resolvePeers parses the --peer addresses.
func (o *nodeOptions) resolvePeers() ([]net.Addr, error) {
	var out []net.Addr
	for _, p := range o.peers {
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
		out = append(out, a)
	}
	return out, nil
}

// broadcastAddrs computes the IPv4 broadcast address of each chosen
// interface, at the node's UDP port.
func (o *nodeOptions) broadcastAddrs(port int) ([]net.Addr, error) {
	if len(o.broadcast) == 0 {
		return nil, nil
	}
	want := map[string]bool{}
	all := false
	for _, name := range o.broadcast {
		if name == broadcastAll || name == "" {
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
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
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

// startNode starts an embedded node with these options.
func (g *globals) startNode(o *nodeOptions, fs *pflag.FlagSet) (*mesh.Node, error) {
	if err := o.loadConfig(fs); err != nil {
		return nil, err
	}
	peers, err := o.resolvePeers()
	if err != nil {
		return nil, err
	}
	if _, _, err := net.SplitHostPort(o.udp); err != nil {
		return nil, usagef("--udp %q: want HOST:PORT", o.udp)
	}
	id, err := g.identity()
	if err != nil {
		return nil, err
	}
	conn, err := mesh.ListenUDP(o.udp, len(o.broadcast) > 0)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("UDP address %s is in use (is another node running? choose another with --udp)", o.udp)
		}
		return nil, err
	}
	bc, err := o.broadcastAddrs(conn.LocalAddr().(*net.UDPAddr).Port)
	if err != nil {
		conn.Close()
		return nil, err
	}
	n, err := mesh.New(mesh.Config{Identity: id, Conn: conn, Peers: peers, Broadcast: bc, Logger: g.logger()})
	if err != nil {
		conn.Close()
		return nil, err
	}
	return n, nil
}
