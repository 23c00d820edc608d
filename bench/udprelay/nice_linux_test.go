package udprelay

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestNiceRaisesRelayThreads: with Config.Nice the relay's four goroutines
// run on threads of that nice value (root only), and the relay still
// carries datagrams.
func TestNiceRaisesRelayThreads(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("raising thread priority needs root (CAP_SYS_NICE)")
	}
	const nice = -7
	r, client, upstream := setup(t, Config{Nice: nice})
	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	upstream.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	if n, _, err := upstream.ReadFromUDP(buf); err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("through the relay: %q, %v", buf[:n], err)
	}
	if !r.Prioritized() {
		t.Fatal("Prioritized() = false as root")
	}
	if got := threadsAtNice(t, nice, true); got < 4 {
		t.Fatalf("%d threads at nice %d, want the relay's 4", got, nice)
	}
	r.Close()
	// The raised threads end with the relay's goroutines; but the main
	// thread, which Go never ends: a goroutine that exits locked to it
	// leaves it parked for good, running nothing.
	deadline := time.Now().Add(5 * time.Second)
	for threadsAtNice(t, nice, false) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := threadsAtNice(t, nice, false); got > 0 {
		t.Fatalf("%d threads still at nice %d after Close", got, nice)
	}
}

// threadsAtNice counts this process's threads whose nice value is nice
// (field 19 of /proc/self/task/TID/stat), the main thread only withMain.
func threadsAtNice(t *testing.T, nice int, withMain bool) int {
	t.Helper()
	stats, err := filepath.Glob("/proc/self/task/*/stat")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	main := filepath.Join("/proc/self/task", strconv.Itoa(os.Getpid()), "stat")
	for _, p := range stats {
		if p == main && !withMain {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread ended
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 16 {
			if v, err := strconv.Atoi(fields[16]); err == nil && v == nice {
				n++
			}
		}
	}
	return n
}

func TestNiceUnsetKeepsPriority(t *testing.T) {
	r, _, _ := setup(t, Config{})
	if r.Prioritized() {
		t.Fatal("Prioritized() = true without Config.Nice")
	}
}
