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

	"github.com/emersion/go-smtp"

	"github.com/heraldmail/herald/internal/redistest"
	"github.com/heraldmail/herald/sink"
)

// etcZone names a fixed-offset zone whose local hour is now hour
// ("Etc/GMT-8" is UTC+8).
func etcZone(hour int) string {
	o := (hour - time.Now().UTC().Hour() + 48) % 24
	if o > 11 {
		o -= 24
	}
	switch {
	case o > 0:
		return fmt.Sprintf("Etc/GMT-%d", o)
	case o < 0:
		return fmt.Sprintf("Etc/GMT+%d", -o)
	}
	return "Etc/GMT"
}

// TestSendingWindow: with [campaign.schedule] hours 09:00-18:00 in each
// recipient's own zone, herald send delivers to those whose local time is
// noon and holds those for whom it is midnight (no attempt counted); a row
// with a zone that does not exist is reported by line at planning. While
// it waits, herald status says when the window opens.
func TestSendingWindow(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	open, closed := etcZone(12), etcZone(0)
	var csv strings.Builder
	csv.WriteString("email,name,tz\n")
	for i := range 10 {
		fmt.Fprintf(&csv, "noon%d@example.com,N%d,%s\n", i, i, open)
		fmt.Fprintf(&csv, "night%d@example.com,M%d,%s\n", i, i, closed)
	}
	csv.WriteString("nozone@example.com,Z,\n")           // the window's own zone: closed
	csv.WriteString("mars@example.com,X,Mars/Olympus\n") // line 23
	dir := t.TempDir()
	host, port, _ := strings.Cut(s.Addr(), ":")
	conf := filepath.Join(dir, "herald.toml")
	os.WriteFile(filepath.Join(dir, "recipients.csv"), []byte(csv.String()), 0o644)
	os.WriteFile(filepath.Join(dir, "body.txt"), []byte("Hello {{.name}}\n"), 0o644)
	os.WriteFile(conf, []byte(fmt.Sprintf(`[campaign]
id = "windowed"
from = "T <t@example.com>"
subject = "Hi {{.name}}"
text = "body.txt"
recipients = "recipients.csv"
[campaign.schedule]
timezone = %q
hours = "09:00-18:00"
timezone_column = "tz"
[[provider]]
name = "local"
host = %q
port = %s
tls = "none"
`, closed, host, port)), 0o644)

	cmd, _, errb := startSend(t, conf)
	waitFor(t, 30*time.Second, func() bool { return s.Stats().Messages >= 10 })
	var st statusReport
	waitFor(t, 10*time.Second, func() bool {
		code, out, _ := runHerald(t, nil, "status", "--config", conf, "--json")
		return code == 0 && json.Unmarshal([]byte(out), &st) == nil && st.Counts["retry"] == 11
	})
	time.Sleep(500 * time.Millisecond)
	if got := s.Stats().Messages; got != 10 {
		t.Fatalf("%d delivered; want the 10 whose local time is noon", got)
	}
	for i := range 10 {
		if s.Received(fmt.Sprintf("noon%d@example.com", i)) != 1 || s.Received(fmt.Sprintf("night%d@example.com", i)) != 0 {
			t.Fatalf("noon%d or night%d: wrong side of the window", i, i)
		}
	}
	if st.Status != "waiting" || !strings.Contains(st.Window, "each recipient's own zone") {
		t.Errorf("status while only the window holds the rest: %+v", st)
	}
	code, out, e := runHerald(t, nil, "report", "--config", conf)
	if code != 0 || !strings.Contains(out, "night0@example.com,retry,0,") || !strings.Contains(out, "outside the sending window; opens ") || !strings.Contains(out, "09:00 "+closed) {
		t.Fatalf("report: the held rows, with no attempt and when they go: %d\n%s\n%s", code, out, e)
	}
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitInterrupted {
		t.Fatalf("send, interrupted while it waits for the window: %v\n%s", err, errb.String())
	}
	if !strings.Contains(errb.String(), `line 23: "Mars/Olympus" is not an IANA zone name`) || !strings.Contains(errb.String(), "timezone_column") {
		t.Fatalf("the bad zone is not reported by line:\n%s", errb.String())
	}

	// The same window in one zone for everyone: status says when it opens.
	os.WriteFile(conf, []byte(strings.Replace(strings.Replace(mustRead(t, conf), `timezone_column = "tz"`, "", 1), `id = "windowed"`, `id = "windowed2"`, 1)), 0o644)
	cmd, _, _ = startSend(t, conf)
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	waitFor(t, 10*time.Second, func() bool {
		code, out, _ := runHerald(t, nil, "status", "--config", conf)
		return code == 0 && strings.Contains(out, "sending window: opens ") && strings.Contains(out, " 09:00 "+closed)
	})
	if got := s.Stats().Messages; got != 10 {
		t.Fatalf("delivered outside the window: %d", got)
	}
}

// TestBounceBrake: a list where one address in five is dead pauses
// itself early with the figures and the advice to clean it (exit 3), with
// the defaults; the dead addresses are on the suppression list.
func TestBounceBrake(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{Faults: sink.Faults{Rules: []*sink.Rule{{Match: "dead", Stage: sink.StageRcpt, Code: 550, Enhanced: smtp.EnhancedCode{5, 1, 1}, Message: "The email account that you tried to reach does not exist"}}}})
	const n = 2000
	c := newCampaign(t, s, n, "connections = 2")
	var csv strings.Builder
	csv.WriteString("email,name\n")
	for i := range n {
		if i%5 == 4 {
			fmt.Fprintf(&csv, "dead%d@example.com,D\n", i)
		} else {
			fmt.Fprintf(&csv, "u%d@example.com,U\n", i)
		}
	}
	os.WriteFile(filepath.Join(c.dir, "recipients.csv"), []byte(csv.String()), 0o644)
	code, o, e := runHerald(t, nil, "send", "--config", c.conf)
	if code != exitInterrupted || !strings.Contains(e, "bounced hard, above bounce_threshold 5.0%") || !strings.Contains(e, "Clean it") || !strings.Contains(e, "herald resume") {
		t.Fatalf("a list with 20%% dead addresses: exit %d\n%s\n%s", code, o, e)
	}
	var st statusReport
	code, out, _ := runHerald(t, nil, "status", "--config", c.conf, "--json")
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Status != "paused" || !strings.Contains(st.Reason, "bounced hard") {
		t.Fatalf("status: %s", out)
	}
	tried := st.Counts["sent"] + st.Counts["failed"]
	t.Logf("paused after %d of %d tried (%d bounced): %s", tried, n, st.Counts["failed"], st.Reason)
	if tried > 300 {
		t.Fatalf("the brake came late: %d tried", tried)
	}
	code, out, _ = runHerald(t, nil, "suppress", "list", "--config", c.conf)
	if code != 0 || strings.Count(out, "dead") != int(st.Counts["failed"]) {
		t.Fatalf("the hard bounces are not all suppressed: %d failed\n%s", st.Counts["failed"], out)
	}
}

// TestWarmupOverflow: provider.warmup = [5, 10] caps the provider's first
// day at 5 messages; the rest of the campaign goes through the backup
// provider (the next priority); status shows the warm-up day and cap.
func TestWarmupOverflow(t *testing.T) {
	t.Parallel()
	t.Run("embedded", func(t *testing.T) { t.Parallel(); warmupOverflow(t, "") })
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		rs := redistest.Start(t)
		warmupOverflow(t, fmt.Sprintf("[queue]\nbackend = \"redis\"\nurl = %q\nlease = \"3s\"", rs.URL()))
	})
}

func warmupOverflow(t *testing.T, queueTOML string) {
	fresh := startSink(t, sink.Config{})
	backup := startSink(t, sink.Config{})
	c := newCampaignOn(t, fresh, 20, "priority = 1\nwarmup = [5, 10]", queueTOML)
	host, port, _ := strings.Cut(backup.Addr(), ":")
	os.WriteFile(c.conf, []byte(mustRead(t, c.conf)+fmt.Sprintf("\n[[provider]]\nname = \"backup\"\nhost = %q\nport = %s\ntls = \"none\"\npriority = 2\n", host, port)), 0o644)
	code, o, e := runHerald(t, nil, "send", "--config", c.conf)
	if code != 0 || fresh.Stats().Messages != 5 || backup.Stats().Messages != 15 {
		// What the store says (retries, attempts, provider usage) and
		// the warming sink's sessions, to tell a lost quota take from
		// a provider closed early.
		_, st, _ := runHerald(t, nil, "status", "--config", c.conf, "--json")
		t.Fatalf("exit %d: the warming provider took %d (cap 5), the backup %d\n%s\n%s\nstatus: %s\nwarming sink: %+v", code, fresh.Stats().Messages, backup.Stats().Messages, o, e, st, fresh.Stats())
	}
	code, out, _ := runHerald(t, nil, "status", "--config", c.conf)
	if code != 0 || !strings.Contains(out, "provider local: 5 sent in the last minute, 5 in the last 24 hours; warm-up day 1, cap 5 spent: day 2 begins ") {
		t.Fatalf("status does not show the warm-up:\n%s", out)
	}
	// Without a backup, the next campaign waits for day 2, and says so.
	conf2 := strings.Replace(mustRead(t, c.conf), `id = "cmdtest"`, `id = "cmdtest2"`, 1)
	conf2 = conf2[:strings.Index(conf2, "\n[[provider]]\nname = \"backup\"")]
	os.WriteFile(c.conf, []byte(conf2), 0o644)
	code, o, e = runHerald(t, nil, "send", "--config", c.conf)
	if fresh.Stats().Messages != 5 || !strings.Contains(e, "warm-up day 1: its cap of 5 messages is spent; day 2 (a cap of 10) begins ") {
		t.Fatalf("no backup: exit %d, %d sent\n%s\n%s", code, fresh.Stats().Messages, o, e)
	}
}
