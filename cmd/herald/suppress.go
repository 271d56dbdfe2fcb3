package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/heraldmail/herald/engine"
	"github.com/heraldmail/herald/queue"
	"github.com/heraldmail/herald/recipients"
)

const suppressSynopsis = `add|remove|list|import|export|migrate --config FILE [--list DOMAIN] [ADDRESS... | FILE]

  add ADDRESS...     put addresses on the list (--reason says why)
  remove ADDRESS...  take them off again (their soft-bounce counts go too)
  list               print the list: address, reason, when added
  import FILE        add every address of a CSV file with an "email" column
                     (and an optional "reason" column: export's output imports)
  export             write the list as CSV (email,reason,added) to stdout or --output
  migrate            move the single list of an earlier herald (one for every
                     sending domain) onto this domain's list

A list belongs to a sending domain: campaigns sent from news@example.com
check the example.com list. Without --list, the domain of campaign.from.`

func cmdSuppress(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fs := newFlags("suppress", suppressSynopsis, stderr)
		if code, ok := parse(fs, args); !ok {
			return code
		}
		fs.Usage()
		return exitInput
	}
	verb := args[0]
	fs := newFlags("suppress", suppressSynopsis, stderr)
	cfgPath := fs.String("config", "", "configuration `file` (its [queue]; campaign.from names the default list)")
	list := fs.String("list", "", "the suppression list: a sending `domain` (default: campaign.from's domain)")
	all := fs.Bool("all", false, "list and export: every list")
	reason := fs.String("reason", "", "add and import: why the addresses are suppressed (default \"added by hand\" / \"imported\")")
	output := fs.String("output", "", "export: write to `file` instead of stdout")
	if code, ok := parse(fs, args[1:]); !ok {
		return code
	}
	operands := fs.Args()
	switch verb {
	case "add", "remove":
		if len(operands) == 0 {
			fmt.Fprintf(stderr, "herald suppress %s: give one or more addresses\n", verb)
			return exitInput
		}
	case "import":
		if len(operands) != 1 {
			fmt.Fprintln(stderr, "herald suppress import: give one CSV file")
			return exitInput
		}
	case "list", "export", "migrate":
		if len(operands) != 0 {
			fmt.Fprintf(stderr, "herald suppress %s: unexpected %q\n", verb, operands[0])
			return exitInput
		}
	default:
		fmt.Fprintf(stderr, "herald suppress: unknown action %q (add, remove, list, import, export, migrate)\n", verb)
		return exitInput
	}
	c, code := open(*cfgPath, queueOnly, engine.Options{}, stderr)
	if c == nil {
		return code
	}
	defer c.Close()
	ctx := context.Background()
	lists := []string{strings.ToLower(strings.TrimSpace(*list))}
	switch {
	case *all && (verb == "list" || verb == "export"):
		var err error
		if lists, err = c.q.SuppressionLists(ctx); err != nil {
			fmt.Fprintf(stderr, "herald suppress: %s\n", err)
			return exitInterrupted
		}
	case *all:
		fmt.Fprintln(stderr, "herald suppress: --all is for list and export")
		return exitInput
	case lists[0] == "" && c.cfg.Campaign.From != "":
		lists[0] = engine.SuppressionList(c.cfg.Campaign.From)
	case lists[0] == "" && verb != "import": // import may name lists in a column
		fmt.Fprintln(stderr, "herald suppress: which list? give --list DOMAIN (the configuration has no campaign.from)")
		return exitInput
	}
	switch verb {
	case "add", "remove":
		return suppressAddresses(ctx, c.q, verb, lists[0], *reason, operands, stdout, stderr)
	case "import":
		return suppressImport(ctx, c.q, lists[0], *list != "", *reason, operands[0], stdout, stderr)
	case "migrate":
		m, ok := c.q.(legacyLists)
		if !ok {
			fmt.Fprintln(stdout, "nothing to migrate")
			return exitOK
		}
		n, err := m.MigrateSuppressions(ctx, lists[0])
		if err != nil {
			fmt.Fprintf(stderr, "herald suppress migrate: %s (running it again is safe)\n", err)
			return exitInterrupted
		}
		fmt.Fprintf(stdout, "moved %d addresses onto the %s list\n", n, lists[0])
		return exitOK
	}
	w := stdout
	if *output != "" {
		f, err := os.Create(*output)
		if err != nil {
			fmt.Fprintf(stderr, "herald suppress: --output: %v\n", err)
			return exitInput
		}
		defer f.Close()
		w = f
	}
	if err := suppressExport(ctx, c.q, lists, verb == "export" || *all, w); err != nil {
		fmt.Fprintf(stderr, "herald suppress: %s\n", err)
		return exitInterrupted
	}
	return exitOK
}

// suppressAddresses adds or removes addresses given on the command line.
func suppressAddresses(ctx context.Context, q queue.Queue, verb, list, reason string, addrs []string, stdout, stderr io.Writer) int {
	keys := make([]string, 0, len(addrs))
	for _, a := range addrs {
		a = strings.TrimSpace(a)
		if why := recipients.CheckAddress(a); why != "" {
			fmt.Fprintf(stderr, "herald suppress %s: %s; nothing changed\n", verb, why)
			return exitInput
		}
		keys = append(keys, recipients.Key(a))
	}
	if verb == "remove" {
		n, err := q.Unsuppress(ctx, list, keys...)
		if err != nil {
			fmt.Fprintf(stderr, "herald suppress remove: %s\n", err)
			return exitInterrupted
		}
		fmt.Fprintf(stdout, "removed %d of %d from the %s list\n", n, len(keys), list)
		return exitOK
	}
	if reason == "" {
		reason = "added by hand"
	}
	before, err := q.Suppressed(ctx, list, keys...)
	if err == nil {
		err = q.Suppress(ctx, list, reason, keys...)
	}
	if err != nil {
		fmt.Fprintf(stderr, "herald suppress add: %s\n", err)
		return exitInterrupted
	}
	fmt.Fprintf(stdout, "added %d to the %s list (%d already on it)\n", len(keys)-len(before), list, len(before))
	return exitOK
}

// suppressImport adds every address of a CSV file. A bad row is reported
// with its line and nothing is added: fix the file and import again. A
// "list" column (export --all writes one) names each row's list, unless
// --list was given.
func suppressImport(ctx context.Context, q queue.Queue, list string, listGiven bool, reason, path string, stdout, stderr io.Writer) int {
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintf(stderr, "herald suppress import: %v\n", err)
		return exitInput
	}
	defer f.Close()
	rd, err := recipients.NewReader(f)
	if err != nil {
		fmt.Fprintf(stderr, "herald suppress import: %s: %v\n", path, err)
		return exitInput
	}
	reasonCol, listCol := -1, -1
	for i, h := range rd.Header() {
		switch {
		case strings.EqualFold(h, "reason"):
			reasonCol = i
		case strings.EqualFold(h, "list") && !listGiven:
			listCol = i
		}
	}
	if list == "" && listCol < 0 {
		fmt.Fprintf(stderr, "herald suppress import: which list? give --list DOMAIN, or a \"list\" column in %s (the configuration has no campaign.from)\n", path)
		return exitInput
	}
	if reason == "" {
		reason = "imported"
	}
	type target struct{ list, reason string }
	byTarget := map[target][]string{}
	lists := map[string]bool{}
	var bad []string
	n := 0
	for {
		row, err := rd.Next()
		if err == io.EOF {
			break
		}
		var rerr *recipients.RowError
		if errors.As(err, &rerr) {
			bad = append(bad, fmt.Sprintf("%s:%s", path, rerr))
			continue
		}
		if err != nil {
			fmt.Fprintf(stderr, "herald suppress import: %s: %v\n", path, err)
			return exitInput
		}
		tg := target{list, reason}
		if reasonCol >= 0 && strings.TrimSpace(row.Fields[reasonCol]) != "" {
			tg.reason = strings.TrimSpace(row.Fields[reasonCol])
		}
		if listCol >= 0 {
			if tg.list = strings.ToLower(strings.TrimSpace(row.Fields[listCol])); tg.list == "" {
				bad = append(bad, fmt.Sprintf("%s:line %d: the list column is empty", path, row.Line))
				continue
			}
		}
		byTarget[tg] = append(byTarget[tg], row.Key)
		lists[tg.list] = true
		n++
	}
	if len(bad) > 0 {
		for _, b := range bad {
			fmt.Fprintln(stderr, b)
		}
		fmt.Fprintf(stderr, "herald suppress import: %d bad rows; nothing was added\n", len(bad))
		return exitInput
	}
	for tg, keys := range byTarget {
		for lo := 0; lo < len(keys); lo += 1000 {
			if err := q.Suppress(ctx, tg.list, tg.reason, keys[lo:min(lo+1000, len(keys))]...); err != nil {
				fmt.Fprintf(stderr, "herald suppress import: %s (running it again is safe)\n", err)
				return exitInterrupted
			}
		}
	}
	names := make([]string, 0, len(lists))
	for l := range lists {
		names = append(names, l)
	}
	slices.Sort(names)
	if len(names) == 0 {
		names = []string{list}
	}
	fmt.Fprintf(stdout, "imported %d addresses into the %s list\n", n, strings.Join(names, ", "))
	return exitOK
}

// suppressExport writes lists as CSV; withList adds the list's name as the
// first column when several lists are written.
func suppressExport(ctx context.Context, q queue.Queue, lists []string, csvOut bool, w io.Writer) error {
	cw := csv.NewWriter(w)
	several := len(lists) > 1
	if csvOut {
		head := []string{"email", "reason", "added"}
		if several {
			head = append([]string{"list"}, head...)
		}
		cw.Write(head)
	}
	for _, l := range lists {
		err := q.WalkSuppressed(ctx, l, func(s queue.Suppression) error {
			at := ""
			if !s.At.IsZero() {
				at = s.At.UTC().Format(time.RFC3339)
			}
			if !csvOut {
				if several {
					_, err := fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", l, s.Key, at, s.Reason)
					return err
				}
				_, err := fmt.Fprintf(w, "%s\t%s\t%s\n", s.Key, at, s.Reason)
				return err
			}
			rec := []string{s.Key, s.Reason, at}
			if several {
				rec = append([]string{l}, rec...)
			}
			return cw.Write(rec)
		})
		if err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// legacyLists is what a queue store offers for the single suppression list
// an earlier herald kept for every sending domain.
type legacyLists interface {
	LegacySuppressions(ctx context.Context) (int, error)
	MigrateSuppressions(ctx context.Context, list string) (int, error)
}

// legacySuppressions says, and returns, how many addresses the earlier
// single list still holds.
func legacySuppressions(q queue.Queue, stderr io.Writer) int {
	m, ok := q.(legacyLists)
	if !ok {
		return 0
	}
	n, err := m.LegacySuppressions(context.Background())
	if err != nil || n == 0 {
		return 0
	}
	fmt.Fprintf(stderr, "herald: the queue holds %d suppressed addresses from an earlier herald, on one list for every sending domain; lists are now per domain\n", n)
	return n
}
