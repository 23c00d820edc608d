package arq

import (
	"flag"
	"testing"

	"go.uber.org/goleak"
)

var seedFlag = flag.Uint64("arq.seed", 1, "seed of the random decisions of the fake packet paths")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
