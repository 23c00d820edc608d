package socks

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/servald/servald/forward"
)

// Rule is one destination an exit may connect to: a set of addresses or a
// host name, and a port range.
//
// Syntax (the argument of --to):
//
//	CIDR | ADDR | HOST | *          any port
//	...:PORT | ...:LOW-HIGH         those ports (1-65535)
//
// An IPv6 address or prefix with a port is bracketed: "[2001:db8::/32]:443",
// "[::1]:22"; without a port it may stand alone: "::1", "fd00::/8". HOST is
// a DNS name, matched case-insensitively and without a final dot;
// "*.example.com" matches every name below example.com (not example.com
// itself). "*" matches every destination.
type Rule struct {
	prefix   netip.Prefix // address rules
	name     string       // host rules: lower case, no final dot, no "*." prefix
	wildcard bool         // name matches names below it
	any      bool         // "*": every address and name
	lo, hi   uint16       // inclusive port range
	text     string
}

// ParseRule parses one rule.
func ParseRule(s string) (Rule, error) {
	r := Rule{lo: 1, hi: 65535, text: s}
	host, ports := s, ""
	bad := func(why string) (Rule, error) {
		return Rule{}, fmt.Errorf("socks: bad rule %q: %s", s, why)
	}
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return bad("missing ']'")
		}
		host = s[1:end]
		if rest := s[end+1:]; rest != "" {
			var ok bool
			if ports, ok = strings.CutPrefix(rest, ":"); !ok || ports == "" {
				return bad("want [IPv6]:PORT or [IPv6]:LOW-HIGH")
			}
		}
		if !strings.Contains(host, ":") {
			return bad("only IPv6 addresses are bracketed")
		}
	case isIP(s):
		// a bare IPv6 address or prefix: its colons are not a port
	default:
		if i := strings.LastIndexByte(s, ':'); i >= 0 {
			host, ports = s[:i], s[i+1:]
			if strings.Contains(host, ":") {
				return bad("an IPv6 address with a port goes in brackets: [ADDR]:PORT")
			}
			if ports == "" {
				return bad("missing port after ':'")
			}
		}
	}
	if ports != "" {
		var err error
		if r.lo, r.hi, err = parsePorts(ports); err != nil {
			return bad(err.Error())
		}
	}
	switch {
	case host == "*":
		r.any = true
	case strings.Contains(host, "/"):
		p, err := netip.ParsePrefix(host)
		if err != nil {
			return bad("bad CIDR prefix")
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		r.prefix = p.Masked()
	case isIP(host):
		a, err := netip.ParseAddr(host)
		if err != nil || a.Zone() != "" {
			return bad("an address with a zone cannot be a rule")
		}
		a = a.Unmap()
		r.prefix = netip.PrefixFrom(a, a.BitLen())
	default:
		name := strings.ToLower(strings.TrimSuffix(host, "."))
		r.name, r.wildcard = strings.CutPrefix(name, "*.")
		if r.name == "" || strings.HasSuffix(r.name, ".") || !forward.ValidName(r.name) {
			return bad("want CIDR, ADDR, HOST or *, then optionally :PORT or :LOW-HIGH")
		}
	}
	return r, nil
}

// isIP reports whether s is an IP address (possibly with a zone) or prefix.
func isIP(s string) bool {
	if _, err := netip.ParsePrefix(s); err == nil {
		return true
	}
	_, err := netip.ParseAddr(s)
	return err == nil
}

// parsePorts parses "PORT" or "LOW-HIGH", each 1-65535.
func parsePorts(s string) (lo, hi uint16, err error) {
	l, h, isRange := strings.Cut(s, "-")
	if lo, err = parsePort(l); err != nil {
		return 0, 0, err
	}
	if !isRange {
		return lo, lo, nil
	}
	if hi, err = parsePort(h); err != nil {
		return 0, 0, err
	}
	if hi < lo {
		return 0, 0, fmt.Errorf("port range %s is empty", s)
	}
	return lo, hi, nil
}

func parsePort(s string) (uint16, error) {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("bad port %q", s)
		}
	}
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil || p == 0 {
		return 0, fmt.Errorf("port %q out of range 1-65535", s)
	}
	return uint16(p), nil
}

// String returns the rule as it was parsed.
func (r Rule) String() string { return r.text }

func (r Rule) hasPort(port uint16) bool { return port >= r.lo && port <= r.hi }

// matchesAddr reports whether the rule admits ap by address.
func (r Rule) matchesAddr(ap netip.AddrPort) bool {
	if !r.hasPort(ap.Port()) {
		return false
	}
	return r.any || r.prefix.IsValid() && r.prefix.Contains(ap.Addr().WithZone("").Unmap())
}

// matchesName reports whether the rule admits name by name.
func (r Rule) matchesName(name string, port uint16) bool {
	if !r.hasPort(port) {
		return false
	}
	if r.any {
		return true
	}
	if r.name == "" {
		return false
	}
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if r.wildcard {
		return strings.HasSuffix(name, "."+r.name)
	}
	return name == r.name
}

// Rules is the set of destinations an exit may connect to: a destination
// is allowed if any rule admits it. The zero Rules refuses everything.
type Rules struct {
	list []Rule
}

// ParseRules parses each argument of --to with ParseRule.
func ParseRules(specs []string) (Rules, error) {
	var rs Rules
	for _, s := range specs {
		r, err := ParseRule(s)
		if err != nil {
			return Rules{}, err
		}
		rs.list = append(rs.list, r)
	}
	return rs, nil
}

// AllowAll returns Rules that admit every destination ("*"), for an exit
// whose users are restricted otherwise (--allow).
func AllowAll() Rules {
	r, _ := ParseRule("*")
	return Rules{list: []Rule{r}}
}

// Empty reports whether there is no rule, so that everything is refused.
func (rs Rules) Empty() bool { return len(rs.list) == 0 }

// String lists the rules, separated by spaces.
func (rs Rules) String() string {
	s := make([]string, len(rs.list))
	for i, r := range rs.list {
		s[i] = r.String()
	}
	return strings.Join(s, " ")
}

// AllowAddr reports whether a connection to ap is allowed by an address
// rule (a CIDR, an address, or "*"). Zones are ignored; IPv4-mapped IPv6
// addresses match as IPv4.
func (rs Rules) AllowAddr(ap netip.AddrPort) bool {
	for _, r := range rs.list {
		if r.matchesAddr(ap) {
			return true
		}
	}
	return false
}

// AllowName reports whether a connection to the host name at port is
// allowed by a host rule (or "*"), whatever the name resolves to.
func (rs Rules) AllowName(name string, port uint16) bool {
	for _, r := range rs.list {
		if r.matchesName(name, port) {
			return true
		}
	}
	return false
}

// addrRulesFor reports whether some address rule admits port, so that
// resolving a name could lead to an allowed address.
func (rs Rules) addrRulesFor(port uint16) bool {
	for _, r := range rs.list {
		if (r.any || r.prefix.IsValid()) && r.hasPort(port) {
			return true
		}
	}
	return false
}
