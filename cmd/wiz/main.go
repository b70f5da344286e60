// Command wiz runs pipelines: DAGs of configured processors, run many times
// with different inputs. See `wiz --help` and docs/.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strings"

	"github.com/alecthomas/kong"
	"github.com/posener/complete"
	"github.com/willabides/kongplete"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/core/store"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0-dev"

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // the run Failed, or an operation failed
	exitUsage  = 2 // bad command line, invalid pipeline, missing input
)

// CLI is wiz's command line.
type CLI struct {
	Home     string `env:"WIZ_HOME" help:"wiz home: state store, blobs and plugins (default ~/.wiz)." placeholder:"DIR"`
	LogLevel string `env:"WIZ_LOG_LEVEL" default:"warn" enum:"trace,debug,info,warn,error,off,none" help:"Log level: trace, debug, info, warn, error, or off (none is off too)."`
	Server   string `env:"WIZ_SERVER" placeholder:"URL" help:"Talk to the wiz daemon at this address (host:port) instead of the wiz home."`
	Token    string `env:"WIZ_TOKEN" help:"Bearer token for --server."`
	CA       string `name:"ca" env:"WIZ_CA" type:"existingfile" placeholder:"FILE" help:"Trust this certificate (the daemon's, or its CA) for --server."`
	Insecure bool   `name:"insecure-skip-verify" help:"Do not verify the daemon's TLS certificate (self-signed, not copied)."`
	Capacity int    `env:"WIZ_CAPACITY" placeholder:"N" help:"Tasks run at once on this machine, shared fairly by concurrent runs (default: number of CPUs)."`
	// KubeContext reaches executor backend plugins as WIZ_KUBE_CONTEXT (they
	// inherit wiz's environment); the kubernetes backend reads it.
	KubeContext string `name:"kube-context" env:"WIZ_KUBE_CONTEXT" placeholder:"NAME" help:"Kubeconfig context the kubernetes executor uses (default: the current context)."`
	// SecretsKeyFile is read by whichever process holds the store (this
	// one, or the daemon with its own flag).
	SecretsKeyFile string `name:"secrets-key-file" env:"WIZ_SECRETS_KEY_FILE" type:"existingfile" placeholder:"FILE" help:"The age key the store's secrets are encrypted with (default: secrets.key in the wiz home or daemon data dir, made on first use)."`

	Run       RunCmd        `cmd:"" help:"Run a pipeline file or a stored pipeline."`
	Pipeline  PipelineCmd   `cmd:"" help:"Apply, list and show pipelines."`
	Runs      RunsCmd       `cmd:"" help:"List and inspect runs."`
	Plugin    PluginCmd     `cmd:"" help:"Install, list, inspect and remove plugins."`
	Version   VersionCmd    `cmd:"" help:"Print the version of wiz and of each plugin."`
	Daemon    DaemonCmd     `cmd:"" help:"Serve the Manager API over TLS with token authentication, for many clients."`
	Tokens    TokenCmd      `cmd:"" name:"token" help:"Create, list and revoke a daemon's API tokens."`
	Executor  ExecutorCmd   `cmd:"" help:"Serve tasks as a wiz executor (started by executor backends)."`
	GC        GCCmd         `cmd:"" name:"gc" help:"Delete old runs and the blobs nothing else refers to; say how much was freed."`
	Cache     CacheCmd      `cmd:"" help:"List and clear the results runs may reuse (cache: on a processor)."`
	Schedules SchedulesCmd  `cmd:"" aliases:"schedule" help:"List, pause and resume the schedules of pipelines (wiz daemon fires them)."`
	Backfill  BackfillCmd   `cmd:"" help:"Run a schedule's ticks in a time range, one run per tick."`
	Triggers  TriggersCmd   `cmd:"" aliases:"trigger" help:"Webhook triggers: their URLs and secrets (wiz daemon serves them)."`
	Secret    SecretCmd     `cmd:"" aliases:"secrets" help:"Set, list and remove the secrets pipelines use (secrets.NAME in env: and secret_files)."`
	Complete  CompletionCmd `cmd:"" name:"completion" help:"Print the shell completion script for bash, zsh or fish."`
	Compact   CompactCmd    `cmd:"" name:"compact-store" hidden:"" help:"Compact a store (wiz runs it itself, in a child process, before a command that finds too many level-0 tables)."`
}

// usageError marks an error for exit code 2.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

// exitError carries an exit code without a message of its own.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func main() {
	stop := cpuProfile()
	code := run(os.Args[1:])
	stop()
	os.Exit(code)
}

// cpuProfile writes a CPU profile of this process to
// $WIZ_CPUPROFILE_DIR/wiz-<pid>.pprof when that variable is set: the way to
// see where the Manager's and `wiz executor`'s time goes in a benchmark
// (docs/performance.md). It returns the function that ends the profile.
func cpuProfile() (stop func()) {
	dir := os.Getenv("WIZ_CPUPROFILE_DIR")
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("wiz-%d.pprof", os.Getpid())))
	if err != nil {
		fmt.Fprintf(os.Stderr, "wiz: WIZ_CPUPROFILE_DIR: %v\n", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		fmt.Fprintf(os.Stderr, "wiz: WIZ_CPUPROFILE_DIR: %v\n", err)
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// setGC sets the garbage collector's target for the command about to run
// (kong's name for it, e.g. "run <file>"). A Manager's run state is many
// small records: collecting at 50% heap growth instead of Go's 100% keeps a
// 10,000-processor run's peak RSS under 100 MiB (about 118 MiB at 100%).
// `wiz executor` keeps Go's default: its heap stays small, and it spends
// CPU on every task, which at 50% went to extra collections (measured with
// bench/, docs/performance.md). GOGC, when set, overrides both.
func setGC(command string) {
	if os.Getenv("GOGC") != "" || strings.HasPrefix(command, "executor") {
		return
	}
	debug.SetGCPercent(50)
}

// smallPipeline is the size under which a pipeline file's run is small
// enough (up to ~2,500 processors) that `wiz run` collects garbage at
// smallRunGC: at 50% the collector's cycles cost a 1,000-processor run more
// CPU than the few MiB they saved were worth (~1% of the run's wall in
// alternating runs).
const (
	smallPipeline = 256 << 10
	smallRunGC    = 200
)

// loosenGC lets `wiz run` of a small pipeline file collect at smallRunGC,
// unless GOGC is set.
func loosenGC(size int) {
	if size > 0 && size < smallPipeline && os.Getenv("GOGC") == "" {
		debug.SetGCPercent(smallRunGC)
		if os.Getenv("GOMEMLIMIT") == "" {
			// A small run's heap is small; a soft limit keeps the looser
			// collection from letting a flood of logs triple it.
			debug.SetMemoryLimit(smallRunMemLimit)
		}
	}
}

// smallRunMemLimit is the soft memory limit of a small pipeline's `wiz run`
// (GOMEMLIMIT overrides it).
const smallRunMemLimit = 64 << 20

func run(args []string) int {
	var cli CLI
	parser, err := kong.New(&cli,
		kong.Name("wiz"),
		kong.Description("wiz runs pipelines: DAGs of processors, with their state kept in a store."),
		kong.UsageOnError(),
		kong.Exit(func(code int) { panic(exitError{code}) }),
		kong.Help(helpPrinter),
	)
	if err != nil {
		fmt.Fprintf(os.Stderr, "wiz: %v\n", err)
		return exitFailed
	}
	code := exitOK
	func() {
		defer func() {
			if r := recover(); r != nil {
				e, ok := r.(exitError)
				if !ok {
					panic(r)
				}
				code = e.code
			}
		}()
		if os.Getenv("COMP_LINE") != "" {
			// A shell asks for completions: print them and exit.
			kongplete.Complete(parser, kongplete.WithPredictor("yaml", complete.PredictFiles("*.y*ml")))
		}
		switch {
		case len(args) == 0:
			printUsage(os.Stdout, parser.Model)
			return
		case args[0] == "--version":
			// Before the parser: `pipeline show --version N` is a flag of
			// its own.
			fmt.Printf("wiz %s\n", version)
			return
		}
		ctx, err := parser.Parse(args)
		if err != nil {
			fmt.Fprintf(os.Stderr, "wiz: error: %v\n", err)
			code = exitUsage
			return
		}
		if cli.LogLevel == "none" {
			cli.LogLevel = "off" // hclog's name for it
		}
		setGC(ctx.Command())
		if cli.KubeContext != "" {
			// Backend plugins inherit the environment.
			if err := os.Setenv("WIZ_KUBE_CONTEXT", cli.KubeContext); err != nil {
				fmt.Fprintf(os.Stderr, "wiz: %v\n", err)
				code = exitFailed
				return
			}
		}
		env := &Env{CLI: &cli}
		defer func() {
			// The store closes last; a disk that refused writes is said
			// once, and fails the command.
			cerr := env.Close()
			if cerr == nil {
				return
			}
			if !errors.Is(cerr, store.ErrUnwritable) || !errors.Is(err, store.ErrUnwritable) {
				var unw *store.UnwritableError
				if errors.As(cerr, &unw) {
					cerr = unw
				}
				fmt.Fprintf(os.Stderr, "wiz: close store: %v\n", cerr)
			}
			if code == exitOK {
				code = exitFailed
			}
		}()
		err = ctx.Run(env)
		code = exitCode(err)
		var ee exitError
		var full *store.DiskFullError
		var unw *store.UnwritableError
		switch {
		case err == nil || errors.As(err, &ee):
		case errors.As(err, &full):
			// What to do, whatever wiz was doing.
			fmt.Fprintf(os.Stderr, "wiz: %v\n", full)
		case errors.As(err, &unw):
			fmt.Fprintf(os.Stderr, "wiz: %v\n", unw)
		default:
			fmt.Fprintf(os.Stderr, "wiz: %v\n", err)
		}
	}()
	return code
}

func exitCode(err error) int {
	var ee exitError
	var ve *manager.ValidationError
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, manager.ErrNotFound):
		return exitFailed // the named thing does not exist
	case errors.As(err, &ve), errors.As(err, &ue), errors.Is(err, manager.ErrUsage):
		return exitUsage
	}
	return exitFailed
}
