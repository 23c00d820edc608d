package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newManCmd writes a man page per command (servald.1, servald-msp-listen.1,
// ...) into DIR.
func newManCmd(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "man DIR",
		Short: "Write the man pages of every command into DIR (created if missing)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("man pages: %w", err)
			}
			hdr := &doc.GenManHeader{Title: "SERVALD", Section: "1", Source: "servald " + versionString()}
			if err := doc.GenManTree(root, hdr, dir); err != nil {
				return fmt.Errorf("man pages: %w", err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "servald: man pages written to %s (read one with: man -l %s/servald.1)\n", dir, dir)
			return nil
		},
	}
}
