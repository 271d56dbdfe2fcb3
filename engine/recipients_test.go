package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/heraldmail/herald/engine"
	"github.com/heraldmail/herald/queue"
	"github.com/heraldmail/herald/sink"
)

// brokenAt is a file of n rows whose row k (line k+1) opens a quote it
// never closes.
func brokenAt(n, k int) string {
	var b strings.Builder
	b.WriteString("email,name\n")
	for i := 1; i <= n; i++ {
		if i == k {
			fmt.Fprintf(&b, "user%d@example.com,\"Broken quote\n", i)
			continue
		}
		fmt.Fprintf(&b, "user%d@example.com,Name %d\n", i, i)
	}
	return b.String()
}

func TestDamagedFilePlansNothing(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	// Row 2,500 of 3,000: without reading the file first, planning would
	// have enqueued the first two batches before finding it.
	b := setup(t, campaignSpec{csv: brokenAt(3000, 2500), providers: providerTOML("local", s, "")})
	ctx := context.Background()
	want := []string{"recipients.csv: line 2501:", "runs to line 3001, the end of the file, swallowing the 500 lines after this one", "fix the file"}
	check := func(what string, err error) {
		t.Helper()
		var in *engine.InputError
		if !errors.As(err, &in) {
			t.Fatalf("%s: want an input error, got %v", what, err)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", what, err, w)
			}
		}
	}
	_, err := b.eng.Plan(ctx, func(engine.Problem) {})
	check("plan", err)
	if _, err := b.q.Campaign(ctx, "test"); !errors.Is(err, queue.ErrNoCampaign) {
		t.Errorf("a campaign was stored from a damaged file: %v", err)
	}
	_, err = b.eng.DryRun(ctx, func(engine.Problem) {})
	check("dry run", err)
	err = b.eng.Preview(ctx, 1, &bytes.Buffer{})
	check("preview", err)
	if s.Stats().Sessions != 0 {
		t.Error("something connected to the server")
	}
}

func TestChangedFileRefused(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	b := setup(t, campaignSpec{recipients: addresses(5, "c"), providers: providerTOML("local", s, "")})
	b.plan()
	if _, err := b.run(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(b.dir, "recipients.csv")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(bytes.Clone(orig), "new@example.com,New\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	b.open()
	_, err = b.eng.Plan(context.Background(), func(engine.Problem) {})
	var in *engine.InputError
	if !errors.As(err, &in) {
		t.Fatalf("a re-run on a changed file: %v", err)
	}
	for _, w := range []string{"campaign test was planned from", "the file has changed since", "bytes, sha256 ", "put the file back", "give campaign.id a new value"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%q does not say %q", err, w)
		}
	}
	// The file as it was: the campaign resumes (and has nothing to send).
	if err := os.WriteFile(path, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	if res := b.plan(); !res.Resumed {
		t.Fatalf("%+v", res)
	}
	if s.Stats().Messages != 5 || s.Received("new@example.com") != 0 {
		t.Fatalf("%+v", s.Stats())
	}
}

func TestTemplateNotUTF8Refused(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	b := setup(t, campaignSpec{recipients: addresses(2, "t"), providers: providerTOML("local", s, "")})
	// "你好" in GBK, on the second line.
	if err := os.WriteFile(filepath.Join(b.dir, "body.txt"), []byte("Hello {{.name}}\n\xc4\xe3\xba\xc3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := engine.New(b.cfg, b.q, engine.Options{})
	var in *engine.InputError
	if !errors.As(err, &in) || !strings.Contains(err.Error(), "campaign.text: "+filepath.Join(b.dir, "body.txt")+": line 2 is not valid UTF-8") {
		t.Fatalf("a GBK template: %v", err)
	}
}

func TestInterruptedPlanOnChangedFileRefused(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	b := setup(t, campaignSpec{recipients: addresses(5, "i"), providers: providerTOML("local", s, "")})
	ctx := context.Background()
	// A plan of another version of the file was interrupted: the record
	// exists, not planned.
	other := "sha256:" + strings.Repeat("ab", 32) + " size:99"
	if _, err := b.q.CreateCampaign(ctx, queue.Campaign{ID: "test", Header: []string{"email", "name"}, Status: queue.Active,
		List: engine.SuppressionList(b.cfg.Campaign.From), Source: other}); err != nil {
		t.Fatal(err)
	}
	_, err := b.eng.Plan(ctx, func(engine.Problem) {})
	var in *engine.InputError
	if !errors.As(err, &in) || !strings.Contains(err.Error(), "was being planned (and was interrupted) from") || !strings.Contains(err.Error(), "99 bytes, sha256 abababababab") {
		t.Fatalf("%v", err)
	}
	if c, _ := b.q.Counts(ctx, "test"); c.Total() != 0 {
		t.Fatalf("jobs were added from the changed file: %+v", c)
	}
}

// TestFileChangedWhilePlanned: a recipients file that changes while it is
// planned (cut short, added to, an address rewritten further on) stops
// the plan with an error that says so, rather than plan whatever rows it
// had then (a file cut short would lose the rest without a word, a
// rewritten row would be sent to an address never in the file checked)
// or blame a row that was never in the file herald checked. The campaign
// is not marked planned; with the file put back as it was, the same plan
// finishes it, and the run sends to every address of the file once.
func TestFileChangedWhilePlanned(t *testing.T) {
	t.Parallel()
	const n = 20000 // rows: far more than the reader holds when the plan starts
	orig := brokenAt(n, 0)
	for _, tc := range []struct {
		name   string
		change func(path string) error
	}{
		{"cut short", func(path string) error { return os.Truncate(path, int64(len(orig))*3/4) }},
		{"added to", func(path string) error {
			f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteString("late@example.com,\"Open quote\n")
			return err
		}},
		{"an address rewritten further on", func(path string) error {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			at := strings.Index(orig, fmt.Sprintf("user%d@", n-10))
			_, err = f.WriteAt([]byte("evil"), int64(at))
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startSink(t, sink.Config{})
			b := setup(t, campaignSpec{csv: orig, providers: providerTOML("local", s, "")})
			ctx := context.Background()
			path := filepath.Join(b.dir, "recipients.csv")
			res, err := b.eng.PlanStarting(ctx, func(engine.Problem) {}, func() {
				if err := tc.change(path); err != nil {
					t.Error(err)
				}
			})
			var in *engine.InputError
			if !errors.As(err, &in) || !strings.Contains(err.Error(), "recipients.csv changed while it was being planned") ||
				!strings.Contains(err.Error(), "put the file back as it was") {
				t.Fatalf("plan of a file that changed: %+v, %v", res, err)
			}
			if c, err := b.q.Campaign(ctx, "test"); err != nil || c.Planned {
				t.Fatalf("the campaign after the failed plan: %+v, %v", c, err)
			}
			if err := os.WriteFile(path, []byte(orig), 0o644); err != nil {
				t.Fatal(err)
			}
			again, err := b.eng.PlanStarting(ctx, func(engine.Problem) {}, nil)
			if err != nil || again.Added+again.Existing != n || again.Duplicates != 0 {
				t.Fatalf("the file put back: %+v, %v", again, err)
			}
			if c, err := b.q.Counts(ctx, "test"); err != nil || c.Open() != n {
				t.Fatalf("jobs: %+v, %v; want %d", c, err, n)
			}
			// Every row planned is a row of the file checked: the run
			// sends to each address of it once, to no other.
			if sum, err := b.run(); err != nil || sum.Sent != n {
				t.Fatalf("run: %+v, %v", sum, err)
			}
			for i := 1; i <= n; i++ {
				if got := s.Received(fmt.Sprintf("user%d@example.com", i)); got != 1 {
					t.Fatalf("user%d got %d messages", i, got)
				}
			}
			if st := s.Stats(); st.Messages != n {
				t.Fatalf("the server took %d messages, want %d", st.Messages, n)
			}
		})
	}
}
