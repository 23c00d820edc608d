package forward

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// halfConn is an outer end the tests drive: a client or a server.
type halfConn interface {
	io.ReadWriteCloser
	HalfCloser
}

// chain joins two connections: left outer <-> [left inner] Join [right inner]
// <-> right outer. kind is "tcp" (loopback TCP) or "mem" (memPair).
type chain struct {
	left, right   halfConn // outer ends, driven by the test
	lOuterTCP     *net.TCPConn
	rightOuterMem *memConn
	join          result[joinResult]
	cancel        context.CancelFunc
}

func newChain(t *testing.T, leftKind, rightKind string) *chain {
	t.Helper()
	c := &chain{}
	var lIn, rIn io.ReadWriteCloser
	c.left, lIn = pairOf(t, leftKind)
	c.right, rIn = pairOf(t, rightKind)
	c.lOuterTCP, _ = c.left.(*net.TCPConn)
	c.rightOuterMem, _ = c.right.(*memConn)
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.join = goJoin(ctx, lIn, rIn)
	t.Cleanup(func() {
		cancel()
		c.left.Close()
		c.right.Close()
		c.join.wait(t, promptly, "join at cleanup")
	})
	return c
}

// ping sends a byte each way through the join, so that both copying
// goroutines are known to be running.
func (c *chain) ping(t *testing.T) {
	t.Helper()
	b := make([]byte, 1)
	for _, p := range [][2]halfConn{{c.left, c.right}, {c.right, c.left}} {
		if _, err := p[0].Write([]byte("p")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(p[1], b); err != nil {
			t.Fatal(err)
		}
	}
}

// pairOf returns (outer, inner) ends of one connection of the given kind.
func pairOf(t *testing.T, kind string) (halfConn, io.ReadWriteCloser) {
	t.Helper()
	switch kind {
	case "tcp":
		c, s := tcpPair(t)
		return c, s
	case "mem":
		a, b := memPair()
		t.Cleanup(func() { a.Close(); b.Close() })
		return a, b
	}
	t.Fatalf("unknown kind %q", kind)
	return nil, nil
}

var kinds = [][2]string{{"tcp", "tcp"}, {"mem", "mem"}, {"tcp", "mem"}, {"mem", "tcp"}}

// TestJoinHalfClose checks that the end that half-closes first still receives
// the whole answer, in both orders and over every pairing of end kinds.
func TestJoinHalfClose(t *testing.T) {
	for _, k := range kinds {
		for _, first := range []string{"client", "server"} {
			t.Run(k[0]+"-"+k[1]+"/"+first+"-first", func(t *testing.T) {
				c := newChain(t, k[0], k[1])
				request := randBytes(t, 300<<10)
				reply := randBytes(t, 1<<20)

				// one side sends everything and half-closes, then reads the
				// other side's message to its end; the other side reads to EOF
				// first and only then answers.
				talker, answerer := c.left, c.right
				talkerMsg, answerMsg := request, reply
				if first == "server" {
					talker, answerer = c.right, c.left
					talkerMsg, answerMsg = reply, request
				}
				ans := goRun(func() error {
					got, err := io.ReadAll(answerer)
					if err != nil {
						return err
					}
					if !bytes.Equal(got, talkerMsg) {
						return errors.New("answerer got wrong bytes")
					}
					if _, err := answerer.Write(answerMsg); err != nil {
						return err
					}
					return answerer.CloseWrite()
				})
				if _, err := talker.Write(talkerMsg); err != nil {
					t.Fatal(err)
				}
				if err := talker.CloseWrite(); err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(talker)
				if err != nil {
					t.Fatalf("talker read after its half-close: %v", err)
				}
				if !bytes.Equal(got, answerMsg) {
					t.Fatalf("talker got %d bytes, want the %d-byte answer", len(got), len(answerMsg))
				}
				if err := ans.wait(t, promptly, "answerer"); err != nil {
					t.Fatal(err)
				}
				r := c.join.wait(t, promptly, "join after both half-closes")
				if r.err != nil {
					t.Fatalf("Join: %v", r.err)
				}
				if r.aToB != int64(len(request)) || r.bToA != int64(len(reply)) {
					t.Fatalf("Join counted %d/%d bytes, want %d/%d", r.aToB, r.bToA, len(request), len(reply))
				}
			})
		}
	}
}

// TestJoinLarge moves a large random stream each way at once and compares
// them byte for byte.
func TestJoinLarge(t *testing.T) {
	size := 8 << 20
	if testing.Short() {
		size = 1 << 20
	}
	for _, k := range kinds {
		t.Run(k[0]+"-"+k[1], func(t *testing.T) {
			c := newChain(t, k[0], k[1])
			up, down := randBytes(t, size), randBytes(t, size+12345)
			send := sendAndCloseWrite
			recv := func(r io.Reader) result[[32]byte] { return readAllSum(t, r) }
			s1, s2 := send(c.left, up), send(c.right, down)
			r1, r2 := recv(c.right), recv(c.left)
			const long = 60 * time.Second
			if err := s1.wait(t, long, "send up"); err != nil {
				t.Fatal(err)
			}
			if err := s2.wait(t, long, "send down"); err != nil {
				t.Fatal(err)
			}
			if r1.wait(t, long, "receive up") != sum(up) {
				t.Error("upstream bytes differ")
			}
			if r2.wait(t, long, "receive down") != sum(down) {
				t.Error("downstream bytes differ")
			}
			r := c.join.wait(t, promptly, "join")
			if r.err != nil || r.aToB != int64(len(up)) || r.bToA != int64(len(down)) {
				t.Fatalf("Join = %d, %d, %v; want %d, %d, nil", r.aToB, r.bToA, r.err, len(up), len(down))
			}
		})
	}
}

var errBroken = errors.New("stream broke")

// TestJoinTeardown checks that an error on one side closes the other side
// at once, while that side is idle (blocked in a read that would otherwise
// never return), and that Join reports the error.
func TestJoinTeardown(t *testing.T) {
	tests := []struct {
		name      string
		left      string
		right     string
		breakSide func(t *testing.T, c *chain)
		want      func(error) bool
	}{
		{
			name: "right stream read error", left: "tcp", right: "mem",
			breakSide: func(t *testing.T, c *chain) { c.rightOuterMem.breakWith(errBroken) },
			want:      func(err error) bool { return errors.Is(err, errBroken) },
		},
		{
			name: "left tcp reset", left: "tcp", right: "mem",
			breakSide: func(t *testing.T, c *chain) {
				if err := c.lOuterTCP.SetLinger(0); err != nil {
					t.Fatal(err)
				}
				c.left.Close() // RST
			},
			want: func(err error) bool { return errors.Is(err, syscall.ECONNRESET) },
		},
		{
			name: "right write error", left: "tcp", right: "mem",
			breakSide: func(t *testing.T, c *chain) {
				// the far end stops reading with an error; the next write
				// Join makes towards it fails
				c.rightOuterMem.r.CloseWithError(errBroken)
				if _, err := c.left.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}
			},
			want: func(err error) bool { return errors.Is(err, errBroken) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newChain(t, tt.left, tt.right)
			c.ping(t)
			// The surviving end is the one not broken: left for the first
			// and third cases, right for the second. Wait on it in a read.
			survivor := io.Reader(c.left)
			if tt.name == "left tcp reset" {
				survivor = c.right
			}
			read := goRun(func() error {
				_, err := io.Copy(io.Discard, survivor)
				return err
			})
			tt.breakSide(t, c)
			r := c.join.wait(t, promptly, "join after a side broke")
			if r.err == nil || !tt.want(r.err) {
				t.Fatalf("Join error = %v, want the break", r.err)
			}
			// The survivor's read ends (EOF or an error), it is not left hanging.
			read.wait(t, promptly, "survivor's read")
		})
	}
}

// TestJoinCancel checks that ctx cancellation tears down an idle join.
func TestJoinCancel(t *testing.T) {
	for _, k := range kinds {
		t.Run(k[0]+"-"+k[1], func(t *testing.T) {
			c := newChain(t, k[0], k[1])
			c.ping(t)
			read := goRun(func() error {
				_, err := io.Copy(io.Discard, c.left)
				return err
			})
			c.cancel()
			r := c.join.wait(t, promptly, "join after cancel")
			if !errors.Is(r.err, context.Canceled) {
				t.Fatalf("Join error = %v, want context.Canceled", r.err)
			}
			read.wait(t, promptly, "client read after cancel")
		})
	}
}

// TestJoinCancelled checks that an already cancelled ctx closes both ends.
func TestJoinCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	a, aPeer := memPair()
	b, bPeer := memPair()
	defer aPeer.Close()
	defer bPeer.Close()
	if _, _, err := Join(ctx, a, b); !errors.Is(err, context.Canceled) {
		t.Fatalf("Join = %v, want context.Canceled", err)
	}
	for _, c := range []*memConn{a, b} {
		if err := c.Close(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s not closed by Join (Close = %v)", c.name, err)
		}
	}
}

// TestJoinNoHalfClose checks the fallback for ends without CloseWrite
// (net.Pipe): EOF from one end closes the other, the data still arrives and
// Join ends cleanly.
func TestJoinNoHalfClose(t *testing.T) {
	client, aIn := net.Pipe()
	bIn, server := net.Pipe()
	j := goJoin(context.Background(), aIn, bIn)
	msg := []byte("hello through a pipe that cannot half-close")
	srv := goRun(func() []byte {
		b, _ := io.ReadAll(server)
		return b
	})
	if _, err := client.Write(msg); err != nil {
		t.Fatal(err)
	}
	client.Close()
	if got := srv.wait(t, promptly, "server read"); !bytes.Equal(got, msg) {
		t.Fatalf("server got %q, want %q", got, msg)
	}
	server.Close()
	r := j.wait(t, promptly, "join")
	if r.err != nil || r.aToB != int64(len(msg)) || r.bToA != 0 {
		t.Fatalf("Join = %d, %d, %v; want %d, 0, nil", r.aToB, r.bToA, r.err, len(msg))
	}
}

// TestCopyPath checks that copyStream uses the WriteTo/ReadFrom methods of
// non-kernel ends and bypasses the kernel types' ones.
func TestCopyPath(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tc, _ := tcpPair(t)
	m, _ := memPair()
	tests := []struct {
		name string
		dst  io.Writer
		src  io.Reader
		want path
	}{
		{"tcp to tcp", tc, tc, viaBuffer},
		{"file to tcp", tc, f, viaBuffer},
		{"tcp to file", f, tc, viaBuffer},
		{"tcp to mem", m, tc, viaBuffer},
		{"mem to tcp", tc, m, viaBuffer},
		{"buffer to mem", m, &bytes.Buffer{}, viaWriterTo},
		{"buffer to tcp", tc, &bytes.Buffer{}, viaWriterTo},
		{"mem to buffer", &bytes.Buffer{}, m, viaReaderFrom},
		{"tcp to buffer", &bytes.Buffer{}, tc, viaReaderFrom},
		{"stdio to mem", m, Stdio(m, m), viaBuffer},
	}
	for _, tt := range tests {
		if got := copyPath(tt.dst, tt.src); got != tt.want {
			t.Errorf("%s: path %d, want %d", tt.name, got, tt.want)
		}
	}
}

// TestJoinIdleHoldsNoBuffer checks that joins whose ends are idle TCP
// sockets hold no copy buffer: after a byte has crossed each direction of
// every join (so that each direction has read), the heap has grown by far
// less than one BufferSize per direction. A blocked Read into a pooled
// buffer would hold 2*joins*BufferSize (16 MiB here).
func TestJoinIdleHoldsNoBuffer(t *testing.T) {
	const joins = 64
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	for range joins {
		newChain(t, "tcp", "tcp").ping(t)
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	grown := int64(ms.HeapAlloc) - int64(before)
	// The free lists may fill (maxIdleBuffers and maxIdleSmall buffers);
	// beyond that, a few KiB per join of sockets and goroutine state.
	limit := int64(maxIdleBuffers*BufferSize + maxIdleSmall*smallBufferSize + joins*BufferSize/4)
	t.Logf("heap grew %d KiB with %d idle joins (limit %d KiB)", grown>>10, joins, limit>>10)
	if grown > limit {
		t.Errorf("heap grew %d KiB with %d idle joins, want at most %d KiB: idle directions hold copy buffers", grown>>10, joins, limit>>10)
	}
}

// unixPair returns the two ends of a Unix socket connection of network
// ("unix" or "unixgram"), closed at cleanup.
func unixPair(t *testing.T, network string) (a, b *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, map[string]int{"unix": syscall.SOCK_STREAM, "unixgram": syscall.SOCK_DGRAM}[network], 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), network)
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

// TestPolledSource checks which ends copyPolled reads: stream sockets,
// whose zero-byte read is EOF, and nothing else.
func TestPolledSource(t *testing.T) {
	tc, _ := tcpPair(t)
	us, _ := unixPair(t, "unix")
	ug, _ := unixPair(t, "unixgram")
	m, _ := memPair()
	for _, tt := range []struct {
		name string
		src  io.Reader
		want bool
	}{{"tcp", tc, true}, {"unix", us, true}, {"unixgram", ug, false}, {"mem", m, false}} {
		if _, _, ok := polledSource(tt.src); ok != tt.want {
			t.Errorf("%s: polled %v, want %v", tt.name, ok, tt.want)
		}
	}
}

// TestJoinUnixStream carries bytes exactly both ways between a Unix stream
// socket (read by copyPolled) and an in-memory pair, with half-close.
func TestJoinUnixStream(t *testing.T) {
	left, lIn := unixPair(t, "unix")
	rIn, right := memPair()
	j := goJoin(context.Background(), lIn, rIn)
	up, down := randBytes(t, 1<<20), randBytes(t, 300000)
	s1, s2 := sendAndCloseWrite(left, up), sendAndCloseWrite(right, down)
	r1, r2 := readAllSum(t, right), readAllSum(t, left)
	for _, s := range []result[error]{s1, s2} {
		if err := s.wait(t, 10*time.Second, "send"); err != nil {
			t.Fatal(err)
		}
	}
	if r1.wait(t, 10*time.Second, "receive up") != sum(up) {
		t.Error("upstream bytes differ")
	}
	if r2.wait(t, 10*time.Second, "receive down") != sum(down) {
		t.Error("downstream bytes differ")
	}
	if r := j.wait(t, promptly, "join"); r.err != nil || r.aToB != int64(len(up)) || r.bToA != int64(len(down)) {
		t.Fatalf("Join = %d, %d, %v; want %d, %d, nil", r.aToB, r.bToA, r.err, len(up), len(down))
	}
}

// sendAndCloseWrite writes b to w and then half-closes it, in a goroutine.
func sendAndCloseWrite(w halfConn, b []byte) result[error] {
	return goRun(func() error {
		if _, err := w.Write(b); err != nil {
			return err
		}
		return w.CloseWrite()
	})
}

// readAllSum reads r to its end in a goroutine and returns the sum of what
// it read; a read error fails t.
func readAllSum(t *testing.T, r io.Reader) result[[32]byte] {
	return goRun(func() [32]byte {
		b, err := io.ReadAll(r)
		if err != nil {
			t.Errorf("read: %v", err)
		}
		return sum(b)
	})
}
