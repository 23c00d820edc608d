package bench

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// socketDrops is the datagrams the kernel dropped at the UDP sockets the
// processes hold (a full receive buffer: what /proc/net/snmp counts as
// RcvbufErrors, but for these sockets only): the drops column of
// /proc/net/udp and udp6 for the sockets among the processes' file
// descriptors. A socket closed since is no longer counted.
func socketDrops(pids ...int) (uint64, error) {
	inodes := map[string]bool{}
	for _, pid := range pids {
		fds, err := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
		if err != nil {
			return 0, err
		}
		for _, fd := range fds {
			l, err := os.Readlink(fd)
			if err == nil && strings.HasPrefix(l, "socket:[") {
				inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
			}
		}
	}
	var total uint64
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			return 0, err
		}
		d, err := parseUDPDrops(string(b), func(f []string) bool { return inodes[f[9]] })
		if err != nil {
			return 0, fmt.Errorf("%s: %w", f, err)
		}
		total += d
	}
	return total, nil
}

// dropsOf is socketDrops as a float, for must and ReportMetric.
func dropsOf(pids ...int) (float64, error) {
	d, err := socketDrops(pids...)
	return float64(d), err
}

// parseUDPDrops sums the drops column (the last) of the /proc/net/udp
// lines that match picks by their columns (the second is the local
// address, the tenth the inode).
func parseUDPDrops(table string, match func(columns []string) bool) (uint64, error) {
	var total uint64
	for i, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 13 || !match(f) {
			continue
		}
		d, err := strconv.ParseUint(f[len(f)-1], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("line %d: %w", i, err)
		}
		total += d
	}
	return total, nil
}

func TestParseUDPDrops(t *testing.T) {
	const table = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  264: 0100007F:E854 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2655794 2 00000000c9d966b6 17
  646: 0100007F:E9D2 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2655741 2 0000000081e1a220 5
  647: 0100007F:E9D3 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2655742 2 0000000081e1a221 1000
`
	got, err := parseUDPDrops(table, func(f []string) bool { return f[9] == "2655794" || f[9] == "2655741" })
	if err != nil || got != 22 {
		t.Fatalf("drops %d, %v; want 22", got, err)
	}
	// A socket of this process that nobody reads, with a small buffer,
	// flooded: its drops show.
	rx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	rx.SetReadBuffer(4096)
	tx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	before, err := socketDrops(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for range 200 {
		tx.WriteTo(make([]byte, 1000), rx.LocalAddr())
	}
	after, err := socketDrops(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 100 {
		t.Fatalf("%d drops counted of 200 datagrams sent to a 4 KiB buffer", after-before)
	}
}
