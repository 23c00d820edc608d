package main

// A plain TCP relay process for the benchmarks: the test binary run again
// with relayEnv set. Two of them in series (client -> relay -> relay ->
// target) are the floor under any tunnel made of two processes: each
// direction crosses two more processes and four more TCP legs than raw TCP,
// with no encryption, framing or mesh at all.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// relayEnv names the target address when the test binary is to be a relay.
const relayEnv = "SERVALD_TEST_RELAY_TARGET"

// runRelayIfAsked turns the process into a relay to $relayEnv on
// 127.0.0.1:0 (printing its address) and never returns, when asked.
func runRelayIfAsked() {
	target := os.Getenv(relayEnv)
	if target == "" {
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr())
	go func() { // end with the parent
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		go func() {
			defer c.Close()
			d, err := net.Dial("tcp", target)
			if err != nil {
				return
			}
			defer d.Close()
			done := make(chan struct{})
			go func() {
				io.Copy(d, c)
				d.(*net.TCPConn).CloseWrite()
				close(done)
			}()
			io.Copy(c, d)
			c.(*net.TCPConn).CloseWrite()
			<-done
		}()
	}
}

// startRelay runs a relay process to target and returns its address.
func startRelay(b *testing.B, target string) string {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), relayEnv+"="+target)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		b.Fatalf("relay: %v", err)
	}
	return strings.TrimSpace(line)
}
