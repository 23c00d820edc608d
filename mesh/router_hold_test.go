package mesh

import (
	"math"
	"testing"
	"testing/synctest"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh/internal/wire"
)

// TestDumpIntervalGrowsWithTable: a node with a big table refreshes it
// less often, so that its refreshes cost it at most dumpBudget bytes a
// second whatever the mesh's size. The interval follows the table at once
// (each entry is due on the interval it was sent with: refresh.go), and the
// Hold our messages carry is 3.5 times the furthest refresh due.
func TestDumpIntervalGrowsWithTable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := StartNode(t, Config{HelloInterval: time.Second}, forgedNet(t).Listen(), nil)
		r := n.router
		r.mu.Lock()
		defer r.mu.Unlock()
		hello := n.cfg.HelloInterval
		if got := r.dumpInterval(3); got != dumpEvery {
			t.Fatalf("empty table: interval %d, want %d", got, dumpEvery)
		}
		const routes, nbs = 1999, 3
		for i := range routes {
			o := numberedSID(i)
			r.routes[o] = &route{origin: o}
		}
		defer func() { clear(r.routes) }()
		want := int(math.Ceil(float64((routes+1)*wire.RouteEntryLen*nbs) / dumpBudget / hello.Seconds()))
		if got := r.dumpInterval(nbs); got != want {
			t.Fatalf("interval %d, want %d", got, want)
		}
		// The budget holds: bytes of one round of tables over the interval.
		if rate := float64((routes+1)*wire.RouteEntryLen*nbs) / (float64(want) * hello.Seconds()); rate > dumpBudget {
			t.Fatalf("full tables cost %.0f B/s, budget %d", rate, dumpBudget)
		}
		r.setHoldLocked(want)
		wantHold := math.Ceil((time.Duration(3*want+want/2) * hello).Seconds())
		if got := r.hold.Load(); float64(got) != wantHold {
			t.Fatalf("hold %d s, want %.0f (3.5 intervals of %d)", got, wantHold, want)
		}
	})
}

// TestEntriesLiveForTheSendersHold: an entry lives as long as the Hold of
// the message it came in (at least advertHold intervals, at most maxHold),
// not the receiver's own idea of the sender's interval.
func TestEntriesLiveForTheSendersHold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := StartNode(t, Config{HelloInterval: time.Second}, forgedNet(t).Listen(), nil)
		r := n.router
		hello := n.cfg.HelloInterval
		for _, c := range []struct {
			hold uint16
			want time.Duration
		}{
			{0, advertHold * hello},
			{1, advertHold * hello},
			{uint16((advertHold * hello * 10).Seconds()), advertHold * hello * 10},
			{math.MaxUint16, maxHold},
		} {
			if got := r.holdOf(&wire.RouteMsg{Hold: c.hold}); got != c.want {
				t.Fatalf("Hold %d s: entries live %v, want %v", c.hold, got, c.want)
			}
		}

		p := &neighbour{sid: identity.SID{0x0B}}
		long, short := identity.SID{0x0A}, identity.SID{0x0C}
		r.mu.Lock()
		old := time.Now().Add(-2 * advertHold * hello)
		r.adverts[p] = map[identity.SID]*advert{
			long:  {seq: 1, mtu: 1500, at: old, hold: 4 * advertHold * hello},
			short: {seq: 1, mtu: 1500, at: old, hold: advertHold * hello},
		}
		r.mu.Unlock()
		r.tick()
		r.mu.Lock()
		defer r.mu.Unlock()
		defer delete(r.adverts, p)
		if r.adverts[p][long] == nil {
			t.Fatal("an entry heard with a long hold expired before it")
		}
		if r.adverts[p][short] != nil {
			t.Fatal("an entry past its hold did not expire")
		}
	})
}
