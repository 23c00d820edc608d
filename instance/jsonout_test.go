package instance

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/servald/servald/discovery"
	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
)

// TestPrintDocs: each document prints as the commands' text did, and as
// one line of JSON with the documented names; empty lists are [] (not
// null).
func TestPrintDocs(t *testing.T) {
	a, b := identity.SID{0xAB, 31: 1}, identity.SID{0xCD, 31: 2}
	routes := []mesh.Route{{SID: a, NextHop: a, Hops: 1, Metric: 256, MTU: 1400}, {SID: b, NextHop: a, Hops: 2, Metric: 600, MTU: 1300}}
	nbs := []mesh.Neighbour{{SID: a, Addr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4110}, MTU: 1400, SRTT: 1500 * time.Microsecond, Loss: 0.25}}
	answers := []discovery.Answer{{SID: b, Hops: 2, Service: discovery.Service{Name: "ssh", Port: 5000}}}
	for _, tc := range []struct {
		doc        Doc
		text, json string
	}{
		{SelfDoc(a), a.String() + "\n", `{"sid":"` + a.String() + `"}` + "\n"},
		{PeersDoc(routes), a.String() + " hops=1 via=AB000000 metric=256\n" + b.String() + " hops=2 via=AB000000 metric=600\n",
			`{"peers":[{"sid":"` + a.String() + `","hops":1,"via":"` + a.String() + `","metric":256},{"sid":"` + b.String() + `","hops":2,"via":"` + a.String() + `","metric":600}]}` + "\n"},
		{PeersDoc(nil), "", `{"peers":[]}` + "\n"},
		{RoutesDoc(routes, nbs), "DESTINATION" + strings.Repeat(" ", 55) + "NEXT HOP  HOPS  METRIC  MTU\n" +
			a.String() + "  AB000000  1     256     1400\n" + b.String() + "  AB000000  2     600     1300\n",
			`{"routes":[{"sid":"` + a.String() + `","next_hop":"` + a.String() + `","hops":1,"metric":256,"mtu":1400},{"sid":"` + b.String() + `","next_hop":"` + a.String() + `","hops":2,"metric":600,"mtu":1300}],` +
				`"neighbours":[{"sid":"` + a.String() + `","addr":"127.0.0.1:4110","mtu":1400,"srtt_us":1500,"loss_pct":25}]}` + "\n"},
		{RoutesDoc(nil, nil), "DESTINATION  NEXT HOP  HOPS  METRIC  MTU\n", `{"routes":[],"neighbours":[]}` + "\n"},
		{ServicesDoc(answers), b.String() + " ssh.mdp.port=5000\n", `{"services":[{"sid":"` + b.String() + `","name":"ssh","port":5000,"hops":2}]}` + "\n"},
	} {
		var text, js strings.Builder
		Print(&text, tc.doc, false)
		Print(&js, tc.doc, true)
		if text.String() != tc.text {
			t.Errorf("%T as text:\n%q\nwant\n%q", tc.doc, text.String(), tc.text)
		}
		if js.String() != tc.json {
			t.Errorf("%T as JSON:\n%s\nwant\n%s", tc.doc, js.String(), tc.json)
		}
	}
}
