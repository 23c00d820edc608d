package msp_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/msp"
)

// A session over a stream transport (over the mesh, the transport is an
// MDP port: node.Bind(0) to dial, node.Bind(port) to listen).
func Example() {
	server, _ := identity.Generate(nil)
	client, _ := identity.Generate(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	l := msp.Listen(nil, server, 5000, msp.Config{})
	defer l.Close()
	c1, c2 := net.Pipe()
	l.Serve(msp.NewStreamTransport(c2))
	go func() {
		st, err := l.AcceptContext(ctx)
		if err != nil {
			return
		}
		defer st.Close()
		io.WriteString(st, "hello")
		st.(*msp.Stream).CloseWrite()
		io.Copy(io.Discard, st)
	}()

	s, err := msp.Dialer{Identity: client}.Dial(ctx, msp.NewStreamTransport(c1), server.SID(), 5000)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	st, err := s.OpenStream(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer st.Close()
	b, err := io.ReadAll(st)
	fmt.Println(string(b), err, s.Peer() == server.SID())
	// Output: hello <nil> true
}
