package splitter

import "fmt"

// Summary is the counters as one line for a person (servald's -v exit
// line), worded so that a clean transfer does not read like loss: a block
// completed from parity is one whose last data shard came later than
// enough parity (on loopback too, since the connections race), not lost
// data.
func (st Stats) Summary() string {
	return fmt.Sprintf("shards sent %d received %d sent again %d; blocks completed from parity %d (a data shard was late or lost; no data lost) asked for again %d; TCP connections opened %d re-opened %d lost %d stalled %d",
		st.ShardsSent, st.ShardsReceived, st.ShardsResent, st.BlocksRebuilt, st.BlocksRerequested,
		st.ConnsOpened, st.ConnsReopened, st.ConnsLost, st.ConnsStalled)
}
