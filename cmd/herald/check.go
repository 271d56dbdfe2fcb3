package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/heraldmail/herald/check"
	"github.com/heraldmail/herald/config"
	"github.com/heraldmail/herald/engine"
)

// cmdCheck is herald check: the campaign's pre-flight (package check).
// Exit 0 when nothing fails, 1 when something does, 2 for a configuration
// or campaign that cannot be checked.
func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", "--config FILE [--resolver HOST:PORT] [--no-connect] [--json]", stderr)
	path := fs.String("config", "", "campaign configuration `file` (TOML)")
	resolver := fs.String("resolver", "", "ask the DNS server at `HOST:PORT` (default: the system's resolver)")
	noConnect := fs.Bool("no-connect", false, "do not connect to the providers (then their passwords are not needed)")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if *path == "" {
		fmt.Fprintln(stderr, "herald: --config FILE is required")
		return exitInput
	}
	r, err := check.NewResolver(*resolver)
	if err != nil {
		fmt.Fprintf(stderr, "herald: %s\n", err)
		return exitInput
	}
	load := config.Load // the providers' passwords, to log in
	if *noConnect {
		load = config.LoadPreview
	}
	cfg, err := load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "herald: %s\n", err)
		return exitInput
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	name := *resolver
	rep, err := check.Run(ctx, cfg, check.Options{Resolver: r, ResolverName: name, Connect: !*noConnect,
		Engine: engine.Options{Logger: newOutput(stderr, true).logger()}})
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "herald: check interrupted")
		return exitInterrupted
	}
	if err != nil {
		fmt.Fprintf(stderr, "herald: %s\n", err)
		return exitInput
	}
	if *asJSON {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "herald: %s\n", err)
		return exitInput
	}
	if rep.Count(check.Fail) > 0 {
		return exitFailed
	}
	return exitOK
}
