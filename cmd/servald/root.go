package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	inst "github.com/servald/servald/instance"
)

// usageError marks a command-line mistake: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// globals are the options every command has.
type globals struct {
	instance string
	verbose  int
	stderr   io.Writer
}

// run executes the command line and returns the exit status; main is the
// only caller of os.Exit.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{stderr: stderr}
	root := newRootCmd(g)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	// One line, even for joined errors, in the user's words.
	msg := inst.Explain(err)
	if !strings.HasPrefix(msg, "servald") {
		msg = "servald: " + msg
	}
	fmt.Fprintln(stderr, msg)
	var ue usageError
	var iue *inst.UsageError
	if errors.As(err, &ue) || errors.As(err, &iue) || isCobraUsage(err) {
		return 2
	}
	return 1
}

// isCobraUsage recognises cobra's own argument and flag errors.
func isCobraUsage(err error) bool {
	s := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires ", "invalid argument", "flag needs an argument", "bad flag syntax"} {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

func newRootCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "servald",
		Short:         "Tunnel TCP and stdio across a mesh of nodes addressed by public key",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionString(),
	}
	root.SetVersionTemplate("servald {{.Version}}\n")
	root.PersistentFlags().StringVar(&g.instance, "instance", "", "instance directory: keyring, config file DIR/config (read when present), daemon socket; default $SERVALINSTANCE_PATH, else ~/.config/servald (both set and different: an error)")
	root.PersistentFlags().CountVarP(&g.verbose, "verbose", "v", "log more to stderr (-v info, -vv debug)")
	root.AddCommand(newKeyringCmd(g), withSubcommands(newIDCmd(g), newPeersCmd(g)), newMSPCmd(g), newStartCmd(g), newStopCmd(g), newStatusCmd(g), newRouteCmd(g), newServiceCmd(g), newSplitCmd(g), newPingCmd(g), newTraceCmd(g), newVersionCmd(), newManCmd(root))
	requireSubcommands(root)
	return root
}

// logger returns the logger for stderr at the chosen verbosity, in the
// format of the command's own lines ("servald: msg key=value").
func (g *globals) logger() *slog.Logger {
	lvl := slog.LevelWarn
	switch {
	case g.verbose > 1:
		lvl = slog.LevelDebug
	case g.verbose == 1:
		lvl = slog.LevelInfo
	}
	return slog.New(inst.NewLineHandler(g.stderr, "servald", lvl))
}

// instanceDir resolves the instance directory: $SERVALINSTANCE_PATH, else
// --instance, else a per-user default.
func (g *globals) instanceDir() (string, error) {
	env := os.Getenv("SERVALINSTANCE_PATH")
	if env != "" && g.instance != "" && filepath.Clean(env) != filepath.Clean(g.instance) {
		return "", usagef("both $SERVALINSTANCE_PATH (%s) and --instance (%s) name an instance directory; unset one", env, g.instance)
	}
	if env != "" {
		return env, nil
	}
	if g.instance != "" {
		return g.instance, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no instance directory: set $SERVALINSTANCE_PATH or --instance (%v)", err)
	}
	return filepath.Join(dir, "servald"), nil
}
