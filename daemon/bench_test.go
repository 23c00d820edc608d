package daemon

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/servald/servald/msp"
)

// BenchmarkStream measures one MSP stream from node a to node b on loopback
// UDP, with a's end bound directly on the node (embedded) or through a's
// daemon (daemon), beside raw loopback TCP in the same run.
func BenchmarkStream(b *testing.B) {
	const chunk = 64 << 10
	run := func(b *testing.B, w net.Conn, sunk <-chan int64) {
		buf := make([]byte, chunk)
		b.SetBytes(chunk)
		b.ReportAllocs()
		var sent int64
		for b.Loop() {
			if _, err := w.Write(buf); err != nil {
				b.Fatal(err)
			}
			sent += chunk
		}
		if cw, ok := w.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			w.Close()
		}
		if got := <-sunk; got != sent {
			b.Fatalf("received %d of %d bytes", got, sent)
		}
	}
	sink := func(c net.Conn) <-chan int64 {
		ch := make(chan int64, 1)
		go func() {
			n, _ := io.Copy(io.Discard, c)
			c.Close()
			ch <- n
		}()
		return ch
	}
	b.Run("tcp", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		acc := make(chan net.Conn, 1)
		go func() { c, _ := ln.Accept(); acc <- c }()
		w, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer w.Close()
		run(b, w, sink(<-acc))
	})
	for _, viaDaemon := range []bool{false, true} {
		name := "embedded"
		if viaDaemon {
			name = "daemon"
		}
		b.Run(name, func(b *testing.B) {
			na, nb := pair(b)
			lpc, err := nb.Bind(5000)
			if err != nil {
				b.Fatal(err)
			}
			lis := msp.Listen(lpc, nb.Identity(), 5000, msp.Config{})
			defer lis.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var tr msp.Transport
			if viaDaemon {
				srv, _ := serve(b, na)
				c := dial(b, srv.SocketPath())
				p, err := c.Bind(ctx, 0)
				if err != nil {
					b.Fatal(err)
				}
				tr = p
			} else {
				pc, err := na.Bind(0)
				if err != nil {
					b.Fatal(err)
				}
				tr = pc
			}
			sess, err := msp.Dialer{Identity: na.Identity()}.Dial(ctx, tr, nb.SID(), 5000)
			if err != nil {
				b.Fatal(err)
			}
			defer sess.Close()
			w, err := sess.OpenStream(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			// The stream reaches the listener when data flows.
			go w.Write(nil)
			r, err := lis.AcceptContext(ctx)
			if err != nil {
				b.Fatal(err)
			}
			run(b, w, sink(r))
		})
	}
}
