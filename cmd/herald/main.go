// Command herald sends bulk mail campaigns over SMTP. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"sort"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/heraldmail/herald/queue"
)

// Exit statuses (DESIGN.md).
const (
	exitOK          = 0 // all delivered
	exitFailed      = 1 // some recipients failed
	exitInput       = 2 // configuration or input error before anything was sent
	exitInterrupted = 3 // interrupted; running again resumes
)

type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

var commands map[string]command

func init() {
	commands = map[string]command{
		"send":         {"run a whole campaign here: plan, deliver, report", cmdSend},
		"preview":      {"print one recipient's message as RFC 5322 text", cmdPreview},
		"check":        {"pre-flight: SPF, DKIM, DMARC, unsubscribe headers and the providers, each with the fix", cmdCheck},
		"report":       {"CSV of every recipient's outcome with the server's reply", cmdReport},
		"sink":         {"a local test SMTP server that accepts and counts mail", cmdSink},
		"enqueue":      {"plan a campaign into the queue without sending; prints its id", cmdEnqueue},
		"status":       {"counts per state, retries, and each provider's recent sending", cmdStatus},
		"pause":        {"stop delivery of a campaign (every running herald sees it within a second)", cmdSetStatus("pause", queue.Paused)},
		"resume":       {"let a paused campaign be delivered again", cmdSetStatus("resume", queue.Active)},
		"cancel":       {"cancel what is not yet sent; the record of what was sent stays", cmdSetStatus("cancel", queue.CampaignCancelled)},
		"worker":       {"deliver every active campaign in the queue until stopped (SIGTERM)", cmdWorker},
		"bench":        {"an SMTP load generator: throughput and per-stage latency of a server", cmdBench},
		"retry-failed": {"queue a campaign's failed recipients again, once the cause is fixed", cmdRetryFailed},
		"bounces":      {"read the bounce mailbox: suppress hard bounces, count soft ones", cmdBounces},
		"serve":        {"answer one-click unsubscribe links (RFC 8058) and the confirmation page", cmdServe},
		"suppress":     {"add, remove, list, import or export a sending domain's suppression list", cmdSuppress},
	}
}

func main() {
	// go-redis prints every failed dial while Redis restarts; herald says
	// itself when the queue is out of reach, once.
	redis.SetLogger(quietRedis{})
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return exitInput
		}
		return exitOK
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "herald: unknown command %q\n\n", args[0])
		usage(stderr)
		return exitInput
	}
	code := c.run(args[1:], stdout, stderr)
	if code == exitForward {
		return forwardOrBusy(args, stdout, stderr)
	}
	return code
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "herald: bulk mail sending engine\n\nUsage: herald COMMAND [flags]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-13s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'herald COMMAND --help' for a command's flags.\nExit status: 0 all delivered, 1 some recipients failed (herald check: a check failed), 2 configuration or input error, 3 interrupted or paused (run again to resume; a paused campaign after herald resume).")
}

// newFlags returns a flag set whose --help prints the command's usage.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("herald "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: herald %s %s\n\n%s\n\nFlags:\n", name, synopsis, commands[name].summary)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags; it returns an exit status and false when the command
// should not go on (--help, or a bad flag).
func parse(fs *flag.FlagSet, args []string) (int, bool) {
	// Allow flags after positional arguments: "report ID --failed".
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return exitOK, false
			}
			return exitInput, false
		}
		args = fs.Args()
		if len(args) > 0 {
			pos = append(pos, args[0])
			args = args[1:]
		}
	}
	_ = fs.Parse(append([]string{"--"}, pos...))
	return 0, true
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n  ") }

// cpuProfile starts a CPU profile into path ("" does nothing); the returned
// func stops it and closes the file.
func cpuProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
