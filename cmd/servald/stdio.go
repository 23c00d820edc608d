package main

import (
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/servald/servald/forward"
)

// stdio returns the command's stdin/stdout as one end of a tunnel. Half-close
// is strict (stdin EOF ends our direction only), except when stdin is a
// terminal: then the far end finishing also ends our input, so that
// `msp listen 5000 > file` typed at a prompt exits when the sender is done,
// as in Serval, instead of waiting for ^D.
func stdio(cmd *cobra.Command) io.ReadWriteCloser {
	sc := forward.Stdio(cmd.InOrStdin(), cmd.OutOrStdout())
	if f, ok := cmd.InOrStdin().(*os.File); ok {
		if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
			return endInputWithOutput{sc}
		}
	}
	return sc
}

type endInputWithOutput struct{ *forward.StdioConn }

func (s endInputWithOutput) CloseWrite() error {
	err := s.StdioConn.CloseWrite()
	s.CloseRead()
	return err
}
