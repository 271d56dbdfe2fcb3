package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldmail/herald/queue"
	"github.com/heraldmail/herald/sink"
)

// TestControlRunningSend: on the embedded queue, whose store one process
// holds, herald status and pause reach a running herald send through its
// control socket (run from another folder, with a relative --config); the
// pause stops the send within a second. Running send again does not
// resume a paused campaign: it says who paused it and names herald
// resume (exit 3); after resume everyone has the message once.
func TestControlRunningSend(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	const n = 3000
	c := newCampaign(t, s, n, "rate = 400\nburst = 5\nconnections = 2")
	cmd, _, errb := startSend(t, c.conf)
	waitFor(t, 30*time.Second, func() bool { return s.Stats().Messages >= 200 })

	// status from the config's parent folder, with a relative path.
	rel := filepath.Join(filepath.Base(c.dir), "herald.toml")
	status := exec.Command(herald, "status", "--config", rel, "--json")
	status.Dir = filepath.Dir(c.dir)
	out, err := status.Output()
	var st statusReport
	if err != nil || json.Unmarshal(out, &st) != nil || st.Status != "active" || st.Counts["sent"] == 0 || st.Total != n {
		t.Fatalf("status of a running send: %v\n%s", err, out)
	}

	// A command that is not forwarded says why it cannot run now.
	if code, _, e := runHerald(t, nil, "suppress", "list", "--config", c.conf); code != exitInput || !strings.Contains(e, "in use by another herald process") || !strings.Contains(e, "a herald send is running on it") {
		t.Fatalf("suppress list during a send: exit %d\n%s", code, e)
	}
	paused := time.Now()
	code, o, e := runHerald(t, nil, "pause", "--config", c.conf)
	if code != 0 || !strings.Contains(o, "cmdtest: paused") {
		t.Fatalf("pause of a running send: exit %d\n%s\n%s", code, o, e)
	}
	atPause := s.Stats().Messages
	err = cmd.Wait()
	stopped := time.Since(paused)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitInterrupted || !strings.Contains(errb.String(), "campaign paused") {
		t.Fatalf("the running send did not stop on pause: %v\n%s", err, errb.String())
	}
	after := s.Stats().Messages - atPause
	t.Logf("the send stopped %v after herald pause started, %d messages after it returned (rate 400/s)", stopped.Round(time.Millisecond), after)
	if after > 400+2 {
		t.Fatalf("%d messages delivered after the pause: it took more than a second", after)
	}
	if _, err := os.Stat(filepath.Join(c.dir, "herald.db.ctl")); !os.IsNotExist(err) {
		t.Fatalf("the control socket outlived the send: %v", err)
	}

	code, o, e = runHerald(t, nil, "send", "--config", c.conf)
	if code != exitInterrupted || !strings.Contains(e, "is paused (by herald pause (") || !strings.Contains(e, "herald resume --config "+c.conf) {
		t.Fatalf("send of a paused campaign: exit %d\n%s\n%s", code, o, e)
	}
	if s.Stats().Messages != atPause+after {
		t.Fatal("send of a paused campaign sent")
	}
	if code, o, e := runHerald(t, nil, "resume", "--config", c.conf); code != 0 {
		t.Fatalf("resume: %d %s %s", code, o, e)
	}
	if code, o, e := runHerald(t, nil, "send", "--config", c.conf); code != 0 {
		t.Fatalf("send after resume: %d\n%s\n%s", code, o, e)
	}
	for i := range n {
		if got := s.Received(fmt.Sprintf("u%d@example.com", i)); got != 1 {
			t.Fatalf("u%d received %d times", i, got)
		}
	}
}

// TestSecretsOnlyForSending: the commands that send nothing run without
// the SMTP password or the unsubscribe secret in the environment; the
// ones that send say which variable is missing.
func TestSecretsOnlyForSending(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{Auth: &sink.Credentials{Username: "news", Password: "pw-0123"}, AllowInsecureAuth: true})
	c := newCampaign(t, s, 5, "username = \"news\"\npassword_env = \"HT_PW\"\n"+
		"[unsubscribe]\nurl = \"https://example.com/u\"\nsecret_env = \"HT_UNSUB\"\n")
	secrets := []string{"HT_PW=pw-0123", "HT_UNSUB=unsubscribe-secret-0123456789"}

	code, o, e := runHerald(t, nil, "preview", "--config", c.conf)
	if code != 0 || !strings.Contains(o, "<https://example.com/u?t=") || !strings.Contains(e, "HT_UNSUB is not set") {
		t.Fatalf("preview without secrets: exit %d\n%s\n%s", code, o, e)
	}
	if code, o, e := runHerald(t, nil, "send", "--config", c.conf, "--dry-run"); code != 0 {
		t.Fatalf("send --dry-run without secrets: exit %d\n%s\n%s", code, o, e)
	}
	// Neither wrote anything.
	if ents, _ := os.ReadDir(c.dir); len(ents) != 3 {
		t.Fatalf("preview and send --dry-run wrote files: %v", ents)
	}
	if code, _, e := runHerald(t, nil, "send", "--config", c.conf); code != exitInput || !strings.Contains(e, "provider[0].password_env: environment variable HT_PW is empty or not set") || !strings.Contains(e, "unsubscribe.secret_env") {
		t.Fatalf("send without secrets: exit %d\n%s", code, e)
	}
	if code, o, e := runHerald(t, secrets, "send", "--config", c.conf); code != 0 || s.Stats().Messages != 5 {
		t.Fatalf("send with secrets: exit %d\n%s\n%s", code, o, e)
	}
	// A finished campaign says so; every sent row counts its attempt.
	code, o, e = runHerald(t, nil, "status", "--config", c.conf, "--json")
	var st statusReport
	if code != 0 || json.Unmarshal([]byte(o), &st) != nil || st.Status != "complete" {
		t.Fatalf("status of a finished campaign: exit %d\n%s\n%s", code, o, e)
	}
	code, o, e = runHerald(t, nil, "report", "--config", c.conf)
	if code != 0 || strings.Count(o, ",sent,1,local,") != 5 {
		t.Fatalf("report: every sent row with 1 attempt: exit %d\n%s\n%s", code, o, e)
	}
	for _, args := range [][]string{
		{"status", "--config", c.conf}, {"report", "--config", c.conf}, {"pause", "--config", c.conf},
		{"resume", "--config", c.conf}, {"suppress", "list", "--config", c.conf}, {"cancel", "--config", c.conf},
	} {
		if code, o, e := runHerald(t, nil, args...); code != 0 {
			t.Errorf("%s without secrets: exit %d\n%s\n%s", args[0], code, o, e)
		}
	}
}

// TestShownStatus: the state status prints is the operator's: complete,
// waiting (only retries left, or every provider's quota spent), paused and
// cancelled as stored, active otherwise.
func TestShownStatus(t *testing.T) {
	t.Parallel()
	active := queue.Campaign{Status: queue.Active, Planned: true}
	frees := time.Now().Add(time.Hour)
	for _, tt := range []struct {
		camp      queue.Campaign
		counts    queue.Counts
		providers []providerUsage
		want      string
	}{
		{active, queue.Counts{Sent: 5, Failed: 1}, nil, "complete"},
		{active, queue.Counts{Sent: 5, Pending: 1}, nil, "active"},
		{active, queue.Counts{Sent: 5, Retry: 2}, nil, "waiting"},
		{active, queue.Counts{Sent: 5, Retry: 2, Leased: 1}, nil, "active"},
		{active, queue.Counts{Sent: 5, Pending: 3}, []providerUsage{{QuotaFrees: &frees}, {QuotaFrees: &frees}}, "waiting"},
		{active, queue.Counts{Sent: 5, Pending: 3}, []providerUsage{{QuotaFrees: &frees}, {}}, "active"},
		{queue.Campaign{Status: queue.Active}, queue.Counts{}, nil, "active"}, // still being planned
		{queue.Campaign{Status: queue.Paused, Planned: true}, queue.Counts{Sent: 5}, nil, "paused"},
		{queue.Campaign{Status: queue.CampaignCancelled, Planned: true}, queue.Counts{Sent: 5, Cancelled: 2}, nil, "cancelled"},
	} {
		if got := shownStatus(tt.camp, tt.counts, tt.providers); got != tt.want {
			t.Errorf("%+v %+v: %s, want %s", tt.camp, tt.counts, got, tt.want)
		}
	}
}
