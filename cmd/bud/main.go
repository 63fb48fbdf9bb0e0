// Command bud runs Bud: `bud dev` runs everything in one process on
// embedded defaults; `bud gateway`, `bud app` and `bud worker` run one
// service each against an external Postgres and Temporal; `bud migrate`
// applies the database migrations; `bud rotate-key` re-seals the stored
// credentials under a new encryption key; `bud replay` checks recorded runs
// against this binary's workflow code.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/budhq/bud"
)

const usage = `bud — an OpenAI-compatible LLM gateway and prompt platform

usage: bud <command> [flags]

commands:
  dev       run everything in one process: migrations, an embedded Temporal
            server and UI, BudApp, BudGateway and a BudPrompt worker
  gateway   run BudGateway (the OpenAI-compatible API)
  app       run BudApp (the management API)
  worker    run a BudPrompt Temporal worker
  migrate   apply the database migrations and exit
  rotate-key
            re-seal every stored credential under a new encryption key
            (services stopped; prints the new key when it generates one)
  replay    replay recent runs' histories (or history files) against this
            binary's workflow code; exits 1 if any is non-deterministic

Run 'bud <command> -h' for the flags of a command. Every flag can also be
set through the environment variable named in its help.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// A second signal while shutting down means "now".
		<-ctx.Done()
		stop()
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
		<-ch
		fmt.Fprintln(os.Stderr, "bud: forced exit")
		os.Exit(130)
	}()

	var err error
	cmd, args := os.Args[1], os.Args[2:]
	switch cmd {
	case "dev":
		err = runDev(ctx, args)
	case "gateway":
		err = runGateway(ctx, args)
	case "app":
		err = runApp(ctx, args)
	case "worker":
		err = runWorker(ctx, args)
	case "migrate":
		err = runMigrate(ctx, args)
	case "rotate-key":
		err = runRotateKey(ctx, args, os.Stdout, os.Stderr)
	case "replay":
		err = runReplay(ctx, args, os.Stdout, os.Stderr)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "bud: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		// Not through the logger, so redacted here: errors quote URLs.
		fmt.Fprintf(os.Stderr, "bud %s: %s\n", cmd, bud.RedactURLs(err.Error()))
		os.Exit(1)
	}
}
