package instance

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func TestDaemonNotRunning(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c, err := DialDaemon(ctx, dir); err == nil || err.Error() != "not running" {
		if c != nil {
			c.Close()
		}
		t.Errorf("DialDaemon with no daemon: %v, want \"not running\"", err)
	}
	if _, err := StopDaemon(ctx, dir); err == nil || err.Error() != "not running" {
		t.Errorf("StopDaemon with no daemon: %v, want \"not running\"", err)
	}
}

func TestWaitExit(t *testing.T) {
	ctx := context.Background()
	if err := WaitExit(ctx, os.Getpid()); err != nil {
		t.Errorf("WaitExit(own pid) = %v: it must not wait for itself", err)
	}
	if IsZombie(os.Getpid()) {
		t.Error("this process is a zombie")
	}
	// The parent (go test) runs on: WaitExit gives up when ctx ends.
	sctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	err := WaitExit(sctx, os.Getppid())
	if err == nil || !strings.Contains(err.Error(), "has not exited") {
		t.Errorf("WaitExit(parent) = %v, want a has-not-exited error", err)
	}
}
