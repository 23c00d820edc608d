package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// versionString is the module version and the VCS revision the binary was
// built from, as the Go toolchain recorded them in the build info.
func versionString() string {
	version, rev, when, dirty := "(unknown)", "", "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		version = bi.Main.Version
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	var parts []string
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if dirty {
			rev += "+modified"
		}
		parts = append(parts, rev)
	}
	if rev == "" {
		parts = append(parts, "no VCS revision recorded")
	}
	if when != "" {
		parts = append(parts, when)
	}
	parts = append(parts, runtime.Version())
	return fmt.Sprintf("%s (%s)", version, strings.Join(parts, ", "))
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and the revision servald was built from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), "servald", versionString())
			return nil
		},
	}
}
