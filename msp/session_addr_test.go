package msp

import (
	"net"
	"testing"
)

// strAddr is an address type that is not comparable (a slice in it).
type strAddr struct{ s []string }

func (a strAddr) Network() string { return "test" }
func (a strAddr) String() string  { return a.s[0] }

type keyAddr struct{ k [4]byte }

func (a keyAddr) Network() string { return "test" }
func (a keyAddr) String() string  { return string(a.k[:]) }

func TestSameAddr(t *testing.T) {
	u1 := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	u2 := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	u3 := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2}
	for _, tc := range []struct {
		a, b net.Addr
		want bool
	}{
		{keyAddr{[4]byte{1, 2, 3, 4}}, keyAddr{[4]byte{1, 2, 3, 4}}, true},
		{keyAddr{[4]byte{1, 2, 3, 4}}, keyAddr{[4]byte{1, 2, 3, 5}}, false},
		{u1, u2, true}, // distinct pointers, same address
		{u1, u3, false},
		{strAddr{[]string{"x"}}, strAddr{[]string{"x"}}, true}, // not comparable: no panic
		{strAddr{[]string{"x"}}, strAddr{[]string{"y"}}, false},
		{u1, keyAddr{}, false},
	} {
		if got := sameAddr(tc.a, tc.b); got != tc.want {
			t.Errorf("sameAddr(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
