package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/servald/servald/identity"
	inst "github.com/servald/servald/instance"
)

func newKeyringCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "keyring", Short: "Show the identities in this instance's keyring"}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the SIDs in the keyring, the node's own first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := g.instanceDir()
			if err != nil {
				return err
			}
			k, err := inst.ReadKeyring(dir)
			if err != nil {
				return err
			}
			for _, id := range k.Identities() {
				fmt.Fprintln(cmd.OutOrStdout(), id.SID())
			}
			return nil
		},
	})
	return cmd
}

func newIDCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "id", Short: "Show identities"}
	var asJSON bool
	self := &cobra.Command{
		Use:   "self [--json]",
		Short: "Print this node's SID (creating the keyring on first use)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			id, err := g.identity()
			if err != nil {
				return err
			}
			return inst.Print(cmd.OutOrStdout(), inst.SelfDoc(id.SID()), asJSON)
		},
	}
	self.Flags().BoolVar(&asJSON, "json", false, jsonUsage)
	cmd.AddCommand(self)
	return cmd
}

// identity returns the node's primary identity, creating the keyring on
// first use.
func (g *globals) identity() (*identity.Identity, error) {
	dir, err := g.instanceDir()
	if err != nil {
		return nil, err
	}
	return inst.Identity(dir)
}
