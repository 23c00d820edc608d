package main

import (
	"strings"

	"github.com/spf13/cobra"
)

// requireSubcommands makes every command below root that only groups
// subcommands (msp, keyring, id, ...) fail as a usage error (exit 2) when
// it is given no subcommand or an unknown one, with cobra's "did you mean"
// where it has one, instead of printing help and exiting 0.
func requireSubcommands(root *cobra.Command) {
	for _, c := range root.Commands() {
		requireSubcommands(c)
		if !c.HasSubCommands() || c.Run != nil || c.RunE != nil {
			continue
		}
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(cmd *cobra.Command, args []string) error {
			var names []string
			for _, s := range cmd.Commands() {
				if s.IsAvailableCommand() {
					names = append(names, s.Name())
				}
			}
			if len(args) == 0 {
				return usagef("%s needs a subcommand: %s (see %s --help)", cmd.CommandPath(), strings.Join(names, ", "), cmd.CommandPath())
			}
			msg := "unknown command %q for %q"
			cmd.SuggestionsMinimumDistance = 2
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				return usagef(msg+"; did you mean %s?", args[0], cmd.CommandPath(), strings.Join(s, " or "))
			}
			return usagef(msg+"; its subcommands are %s", args[0], cmd.CommandPath(), strings.Join(names, ", "))
		}
	}
}
