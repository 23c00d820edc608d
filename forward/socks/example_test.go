package socks_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"

	"github.com/servald/servald/forward/socks"
)

// A SOCKS server whose streams reach an Exit. Here the streams are loopback
// TCP connections; in servald they are MSP streams: msp connect --socks
// opens one per client (Server.Open), and msp listen --socks hands each
// accepted stream to the Exit.
func Example() {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+r.URL.Path)
	}))
	defer web.Close()

	rules, err := socks.ParseRules([]string{"localhost"}) // --to=localhost
	if err != nil {
		fmt.Println(err)
		return
	}
	exit := &socks.Exit{Rules: rules}
	streams, _ := net.Listen("tcp", "127.0.0.1:0") // stands for msp listen
	srv := &socks.Server{Open: func(ctx context.Context) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", streams.Addr().String()) // stands for an MSP dial
	}}
	proxy, _ := net.Listen("tcp", "127.0.0.1:0") // --socks=PORT

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { exit.Serve(ctx, func(context.Context) (net.Conn, error) { return streams.Accept() }) })
	wg.Go(func() { srv.Serve(ctx, proxy) })
	defer func() { cancel(); streams.Close(); wg.Wait() }()

	// Go's HTTP client speaks SOCKS5; with socks5h it sends the name.
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "socks5h", Host: proxy.Addr().String()})}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	for _, u := range []string{strings.Replace(web.URL, "127.0.0.1", "localhost", 1), web.URL} {
		resp, err := client.Get(u + "/page")
		if err != nil {
			fmt.Println("refused:", strings.Contains(err.Error(), "not allowed"))
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(string(body))
	}
	fmt.Println(exit.Stats().Connected, exit.Stats().Refused)
	// Output:
	// hello /page
	// refused: true
	// 1 1
}
