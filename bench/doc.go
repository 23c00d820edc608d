// Package bench holds servald's real-path benchmarks: real servald
// processes on real UDP sockets on loopback, through an in-process
// [udprelay] that stands for a lossy, delayed, MTU-1500 link, each figure
// printed beside a kcptun-equivalent baseline ([kcpbase], run as a
// process by bench/cmd/benchpeer) measured in the same run, raw TCP, and
// two plain io.Copy relays in series.
//
// BenchmarkRealLoopback, BenchmarkRealLossy and BenchmarkRealChain run
// real processes; BenchmarkInprocLossy and BenchmarkInprocChain run the
// same settings with the nodes inside the test process, over memnet and
// over real UDP through the relay, to split the gap between the two and to
// be profiled (-cpuprofile): servald has no pprof flag.
//
// The package has no code of its own outside its tests; run it with
//
//	go test -run '^$' -bench . -benchtime 1x ./bench/
//
// or through scripts/bench, which prints the table and checks the
// targets. Nothing here is imported by product code.
package bench
