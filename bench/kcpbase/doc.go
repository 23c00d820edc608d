// Package kcpbase is a benchmark-only stand-in for kcptun: the same data
// path (github.com/xtaci/kcp-go/v5 carrying github.com/xtaci/smux streams)
// with kcptun's default settings, so that servald's figures can be printed
// beside it from the same run. Product code never imports it.
package kcpbase
