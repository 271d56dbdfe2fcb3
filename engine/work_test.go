package engine_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/heraldmail/herald/engine"
	"github.com/heraldmail/herald/queue"
	"github.com/heraldmail/herald/sink"
)

// TestWorkDeliversStoredCampaigns: a worker with no campaign of its own
// delivers what Plan stored (content included) and skips, with one log
// line, a campaign whose content is missing; a paused campaign waits.
func TestWorkDeliversStoredCampaigns(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{Keep: true})
	b := setup(t, campaignSpec{recipients: addresses(40, "w"), providers: providerTOML("local", s, "connections = 2")})
	b.plan()
	ctx := context.Background()
	// A campaign without stored content (as an older herald planned it).
	if _, err := b.q.CreateCampaign(ctx, queue.Campaign{ID: "legacy", Header: []string{"email", "name"}, Status: queue.Active}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.q.Enqueue(ctx, "legacy", []queue.Job{{Seq: 2, Key: "old@example.com", Email: "old@example.com", Fields: []string{"old@example.com", "Old"}}}); err != nil {
		t.Fatal(err)
	}
	// A paused one with content.
	if _, err := b.q.CreateCampaign(ctx, queue.Campaign{ID: "held", Header: []string{"email", "name"}, Status: queue.Active, Spec: mustSpec(t, b)}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.q.Enqueue(ctx, "held", []queue.Job{{Seq: 2, Key: "held@example.com", Email: "held@example.com", Fields: []string{"held@example.com", "Held"}}}); err != nil {
		t.Fatal(err)
	}
	if err := b.q.SetStatus(ctx, "held", queue.Paused, "by a test"); err != nil {
		t.Fatal(err)
	}

	w, err := engine.NewWorker(b.cfg, b.q, engine.Options{Logger: slog.New(slog.NewTextHandler(b.logs, nil)), Timing: engine.Timing{StatusPoll: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	soft, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	go func() {
		for s.Stats().Messages < 40 && soft.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(150 * time.Millisecond) // a few more looks at the campaigns
		stop()
	}()
	sum, err := w.Work(soft, ctx)
	if !errors.Is(err, engine.ErrInterrupted) || sum.Sent != 40 {
		t.Fatalf("Work: %+v %v", sum, err)
	}
	for _, m := range s.Messages() {
		if !strings.Contains(string(m.Data), "Subject: Hello Name ") {
			t.Fatalf("not the stored content:\n%s", m.Data)
		}
	}
	if s.Received("old@example.com") != 0 || s.Received("held@example.com") != 0 {
		t.Fatal("a campaign without content, or a paused one, was delivered")
	}
	if n := strings.Count(b.logs.String(), "cannot deliver campaign"); n != 1 || !strings.Contains(b.logs.String(), "campaign=legacy") {
		t.Fatalf("the campaign without content must be reported once, got %d:\n%s", n, b.logs.String())
	}
	if c, _ := b.q.Counts(ctx, "test"); c.Sent != 40 || c.Open() != 0 {
		t.Fatalf("counts %+v", c)
	}
}

func mustSpec(t *testing.T, b *bundle) []byte {
	t.Helper()
	spec, err := engine.SpecFromConfig(b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return spec.Encode()
}

// TestPlanStoresContent: Plan stores the campaign's content with it; a
// later plan with other templates replaces it and says so.
func TestPlanStoresContent(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	b := setup(t, campaignSpec{recipients: addresses(3, "p"), providers: providerTOML("local", s, "")})
	if res := b.plan(); res.ContentChanged {
		t.Fatal("a new campaign reported changed content")
	}
	stored, err := b.q.Spec(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := engine.DecodeSpec(stored)
	if err != nil || !strings.Contains(spec.Text, "Dear {{.name}}") || spec.From != "Herald Test <news@example.com>" || spec.MaxAttempts != 5 {
		t.Fatalf("stored spec: %+v %v", spec, err)
	}
	if res := b.plan(); !res.Resumed || res.ContentChanged {
		t.Fatalf("the same content again: %+v", res)
	}
	writeFile(t, b.dir+"/body.txt", "Changed {{.name}}\n")
	b.open()
	if res := b.plan(); !res.ContentChanged {
		t.Fatalf("changed template not noticed: %+v", res)
	}
	stored, _ = b.q.Spec(context.Background(), "test")
	if spec, _ := engine.DecodeSpec(stored); spec.Text != "Changed {{.name}}\n" {
		t.Fatalf("not replaced: %q", spec.Text)
	}
	if _, err := engine.DecodeSpec(nil); err == nil || !strings.Contains(err.Error(), "no campaign content") {
		t.Fatalf("missing spec: %v", err)
	}
	if _, err := engine.DecodeSpec([]byte(`{"version":99}`)); err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Fatalf("future spec: %v", err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
