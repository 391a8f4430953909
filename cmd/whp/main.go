// Command whp is the webhooks platform: one binary for every role.
//
//	whp dev                  the whole platform in one process on embedded defaults
//	whp catalog validate     check a catalog; every problem as file:line:col
//	whp reconcile            apply the catalog (or print the plan) to the store and Kafka
//
// Configuration comes from flags, each with a WHP_* environment variable
// of the same name (--data-dir and WHP_DATA_DIR); a flag wins over its
// variable.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/KimMachineGun/automemlimit/memlimit"

	"github.com/whp-dev/whp/runtime/bench"
)

// usageError is a mistake in the command line: exit 2 with usage.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

const usage = `whp: the webhooks platform

Usage:
  whp dev [--data-dir .whp] [--catalog ./catalog] [--addr 127.0.0.1:8080]
  whp catalog validate [--dir ./catalog] [--base GIT_REV]
  whp reconcile [--once] [--dry-run] [--catalog DIR | --repo URL [--branch B | --tag T | --commit C] [--path P]]
  whp reconcile status [--data-dir .whp | --url http://127.0.0.1:8080] [--json]
  whp dlq list|redrive [--url http://127.0.0.1:8080] [--subscription S | --partner P | --delivery-id IDS] [--from T] [--to T]
  whp dlq reindex [--url http://127.0.0.1:8080]   (upgrading DynamoDB tables: infra/modules/dynamodb/README.md)
  whp console --users-file F | --oidc-issuer URL … [--store dynamodb …] --ingress-brokers B --egress-brokers B
  whp status [--url http://127.0.0.1:8080] [--window 1h] [--json]
  whp replay --subscription S --from T [--to T] [--rate N] [--url http://127.0.0.1:8080]
  whp ingest | processor | dispatcher [--store dynamodb --dynamodb-endpoint URL --env E] --ingress-brokers B --egress-brokers B [--secrets FILE|aws]
  whp bench [--duration 10s] [--connections 64] [--rate 200] [--payload 1024] [--fanout 1] [--json] [--sweep-payloads L --sweep-fanouts L --plot F]
  whp tables create [--env dev] [--endpoint URL]
  whp version

Every flag can also be set as WHP_<FLAG> in the environment (WHP_DATA_DIR…).
`

func main() {
	setMemoryLimit(memlimit.FromCgroup, os.Stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if onLambda() {
		if err := runLambda(ctx, os.Getenv("WHP_ROLE"), os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "whp:", err)
			os.Exit(1)
		}
		return
	}
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "dev":
		err = runDev(ctx, args[1:], stdout, stderr)
	case "ingest":
		err = runIngest(ctx, args[1:], stderr)
	case "processor":
		err = runProcessor(ctx, args[1:], stderr)
	case "dispatcher":
		err = runDispatcher(ctx, args[1:], stderr)
	case "tables":
		err = runTables(ctx, args[1:], stdout, stderr)
	case "replay":
		err = runReplay(ctx, args[1:], stdout, stderr)
	case "bench":
		err = runBench(ctx, args[1:], stdout, stderr)
	case benchProcess: // not in the usage: whp bench runs it
		err = bench.ServeProcess(ctx, os.Stdin, stdout)
	case "console":
		err = runConsole(ctx, args[1:], stderr)
	case "status":
		err = runStatus(ctx, args[1:], stdout, stderr)
	case "dlq":
		err = runDLQ(ctx, args[1:], stdout, stderr)
	case "reconcile":
		err = runReconcile(ctx, args[1:], stdout, stderr)
	case "catalog":
		if len(args) < 2 || args[1] != "validate" {
			err = usageError{"whp catalog: expected the subcommand validate"}
		} else {
			err = runValidate(args[2:], stdout, stderr)
		}
	case "config-docs":
		err = configDocs(ctx, stdout)
	case "version":
		fmt.Fprintln(stdout, "whp", version())
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		err = usageError{fmt.Sprintf("whp: unknown command %q", args[0])}
	}
	var ue usageError
	var fe exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%s\n\n%s", ue.msg, usage)
		return 2
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &fe):
		return fe.code
	default:
		fmt.Fprintln(stderr, "whp:", err)
		return 1
	}
}

// exitError ends the command with a code after it printed its own report.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// newFlags returns a flag set whose flags default to WHP_* variables.
// When stderr is a flagCollector (whp config-docs), the set is handed to
// it, so the documentation is made from the very flags the commands parse.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if c, ok := stderr.(*flagCollector); ok {
		c.sets = append(c.sets, fs)
		fs.SetOutput(io.Discard)
	}
	return fs
}

// envDefaults sets every flag not given on the command line from its WHP_*
// variable, and fails on a variable that does not parse.
func envDefaults(fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		env := "WHP_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
		}
	})
	return errors.Join(errs...)
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("whp %s: unexpected argument %q", fs.Name(), fs.Arg(0))}
	}
	return envDefaults(fs)
}
