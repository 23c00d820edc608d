package main

import "github.com/spf13/cobra"

// addJSONFlag adds --json to cmd: print one JSON document (an object, of
// the instance package's *JSON types) instead of text.
func addJSONFlag(cmd *cobra.Command, on *bool) {
	cmd.Flags().BoolVar(on, "json", false, "print one JSON object instead of text (fields: README.md, JSON output)")
}
