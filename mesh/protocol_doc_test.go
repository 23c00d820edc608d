package mesh

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/servald/servald/internal/protodoc"
	"github.com/servald/servald/mesh/internal/wire"
)

// TestProtocolDocConstants: the constants docs/PROTOCOL.md quotes for the
// mesh are the code's.
func TestProtocolDocConstants(t *testing.T) {
	d := DefaultConfig()
	var probes []string
	for _, s := range probeSizes {
		probes = append(probes, strconv.Itoa(s))
	}
	var thresholds []string
	for _, v := range costThresholds {
		thresholds = append(thresholds, strconv.FormatFloat(v, 'g', -1, 64))
	}
	protodoc.Check(t,
		fmt.Sprintf("Links start at %d-byte frames.", baseMTU),
		fmt.Sprintf("PROBEs of %s and %s bytes", strings.Join(probes[:len(probes)-1], ", "), probes[len(probes)-1]),
		fmt.Sprintf("then the %d-byte probe alone up to ten", probeSizes[len(probeSizes)-1]),
		fmt.Sprintf("The sender keeps up to %d frames in flight", d.LinkWindow),
		fmt.Sprintf("unacknowledged one + %d: a frame lost", spanFactor*d.LinkWindow),
		fmt.Sprintf("bitmap of the %d sequence numbers above", spanFactor*d.LinkWindow),
		fmt.Sprintf("After %d attempts a frame is given up", d.MaxAttempts),
		fmt.Sprintf("hello interval (%d s)", int(d.HelloInterval.Seconds())),
		fmt.Sprintf("(moving average, weight 1/%d)", int(1/qualityAlpha)),
		fmt.Sprintf("doubles for each class below %s", strings.Join(thresholds, ", ")),
		fmt.Sprintf("only when d is %g past the bound and has stayed in the new class for %d hello intervals", costHysteresis, costSettle),
		fmt.Sprintf("only if that one is at least %d%% cheaper", 100-400/hysteresisQuarters),
		fmt.Sprintf("A full table goes to each neighbour every %d hello intervals", dumpEvery),
		fmt.Sprintf("than %d bytes a second (entries without signatures counted)", dumpBudget),
		fmt.Sprintf("intervals: entries heard in it live that long unrefreshed (at least %d", advertHold),
		fmt.Sprintf("hello intervals, at most %d min), then expire", int(maxHold.Minutes())),
		fmt.Sprintf("and again every %d hello intervals, or every %d refresh intervals", originEvery, originDumps),
		fmt.Sprintf("advertised for %d s; the route's record, with", int(retractedHold.Seconds())),
		fmt.Sprintf("its feasibility distance, is kept %d minutes", int(sourceHold.Minutes())),
		fmt.Sprintf("*table wanted* is honoured at most every %d hello intervals", wantEvery),
		fmt.Sprintf("remembers a request it forwarded for %d s, one per neighbour", int(wantHold.Seconds())),
		fmt.Sprintf("once %d s have passed since it last asked, the interval doubling up to\n  %d s", int(firstAskBack.Seconds()), int(maxAskBack.Seconds())),
		fmt.Sprintf("For its first %d hello intervals (the average's memory)", qualityWarmup),
		fmt.Sprintf("Every %s refresh of an entry carries its signature", map[int]string{3: "third", 4: "fourth", 5: "fifth"}[sigEvery]),
		fmt.Sprintf("message = version=%d (1)", wire.RouteVersion),
		fmt.Sprintf("avoided for %d s, twice as long (up to %d min)", int(failHold.Seconds()), int(maxFailHold.Minutes())),
		fmt.Sprintf("at most %d. They are local", maxFailMarks),
		fmt.Sprintf("link MTU − %d (the DATA header) − %d bytes", wire.DataHeaderLen, wire.BudgetLen),
		fmt.Sprintf("| %d | DATA+BUDGET | as DATA, then budget (%d: microseconds left)", wire.TypeDataBudget, wire.BudgetLen),
	)
}
