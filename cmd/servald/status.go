package main

import (
	"context"

	"github.com/spf13/cobra"

	inst "github.com/servald/servald/instance"
)

func newStatusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--json]",
		Short: "Show this instance's daemon: the node, its neighbours, the tunnels through it and their sessions, drop counters (exit 1 if it does not run)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := g.daemonDir()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), inst.DaemonTimeout)
			defer cancel()
			c, err := inst.DialDaemon(ctx, dir)
			if err != nil {
				return err
			}
			defer c.Close()
			snap, err := inst.DaemonSnapshot(ctx, c)
			if err != nil {
				return err
			}
			if asJSON {
				return inst.WriteStatusJSON(cmd.OutOrStdout(), snap)
			}
			return inst.WriteStatus(cmd.OutOrStdout(), snap)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document (field names in the README, \"status --json\")")
	return cmd
}
