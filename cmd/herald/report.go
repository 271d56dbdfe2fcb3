package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"strconv"

	"github.com/heraldmail/herald/engine"
	"github.com/heraldmail/herald/queue"
)

func cmdPreview(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("preview", "--config FILE [--row N]", stderr)
	path := fs.String("config", "", "campaign configuration `file` (TOML)")
	row := fs.Int("row", 1, "which recipient: the N-th valid row of the recipients file")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	c, code := open(*path, campaignPreview, engine.Options{Logger: newOutput(stderr, true).logger()}, stderr)
	if c == nil {
		return code
	}
	defer c.Close()
	if code, done := failed(c.eng.Preview(context.Background(), *row, stdout), stderr); done {
		return code
	}
	return exitOK
}

func cmdReport(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("report", "--config FILE [ID] [--failed]", stderr)
	path := fs.String("config", "", "campaign configuration `file` (TOML)")
	onlyFailed := fs.Bool("failed", false, "only recipients that failed")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	c, camp, code := openExisting(*path, fs.Args(), stderr)
	if c == nil {
		return code
	}
	defer c.Close()
	id := camp.ID
	ctx := context.Background()
	w := csv.NewWriter(stdout)
	_ = w.Write([]string{"email", "outcome", "attempts", "provider", "reply", "line"})
	err := c.q.Walk(ctx, id, func(j queue.Job) error {
		if *onlyFailed && j.State != queue.Failed {
			return nil
		}
		return w.Write([]string{j.Email, j.State.String(), strconv.Itoa(j.Attempts), j.Provider, j.Reply, strconv.FormatUint(j.Seq, 10)})
	})
	w.Flush()
	if err == nil {
		err = w.Error()
	}
	if err != nil {
		fmt.Fprintf(stderr, "herald: report: %s\n", err)
		return exitInterrupted
	}
	return exitOK
}
