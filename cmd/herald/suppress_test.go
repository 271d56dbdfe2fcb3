package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/heraldmail/herald/sink"
)

func TestSuppressCommands(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	c := newCampaign(t, s, 20, "")
	suppress := func(args ...string) (int, string, string) {
		return runHerald(t, nil, append([]string{"suppress", args[0], "--config", c.conf}, args[1:]...)...)
	}
	if code, out, errs := suppress("add", "--reason", "asked by phone", "U1@Example.com"); code != 0 || !strings.Contains(out, "added 1 to the example.com list") {
		t.Fatalf("add: %d %q %q", code, out, errs)
	}
	if code, out, _ := suppress("add", "u1@example.com"); code != 0 || !strings.Contains(out, "added 0") || !strings.Contains(out, "1 already on it") {
		t.Fatalf("add again: %d %q", code, out)
	}
	// A bad row is reported with its line and nothing is imported.
	bad := filepath.Join(c.dir, "bad.csv")
	os.WriteFile(bad, []byte("email,reason\nu2@example.com,complaint\nnot an address,x\n"), 0o644)
	if code, _, errs := suppress("import", bad); code != exitInput || !strings.Contains(errs, "bad.csv:line 3") || !strings.Contains(errs, "nothing was added") {
		t.Fatalf("import of a bad file: %d %q", code, errs)
	}
	good := filepath.Join(c.dir, "good.csv")
	os.WriteFile(good, []byte("email,reason\nu2@example.com,complaint\nu3@example.com,\n"), 0o644)
	if code, out, errs := suppress("import", good); code != 0 || !strings.Contains(out, "imported 2") {
		t.Fatalf("import: %d %q %q", code, out, errs)
	}
	code, out, _ := suppress("list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "u1@example.com\t") || !strings.HasSuffix(lines[0], "\tasked by phone") ||
		!strings.HasSuffix(lines[1], "\tcomplaint") || !strings.HasSuffix(lines[2], "\timported") {
		t.Fatalf("list: %d\n%s", code, out)
	}
	exported := filepath.Join(c.dir, "export.csv")
	if code, _, errs := suppress("export", "--output", exported); code != 0 {
		t.Fatalf("export: %d %q", code, errs)
	}
	// Export's output imports: into another list here.
	if code, out, errs := suppress("import", "--list", "Other.Example", exported); code != 0 || !strings.Contains(out, "imported 3 addresses into the other.example list") {
		t.Fatalf("import of the export: %d %q %q", code, out, errs)
	}
	if code, out, _ := suppress("export", "--all"); code != 0 || strings.Count(out, "other.example,") != 3 || strings.Count(out, "\nexample.com,") != 3 ||
		!strings.Contains(out, "other.example,u1@example.com,asked by phone,") {
		t.Fatalf("export --all: %d\n%s", code, out)
	}
	// export --all imports back into each row's own list.
	all := filepath.Join(c.dir, "all.csv")
	if code, _, errs := suppress("export", "--all", "--output", all); code != 0 {
		t.Fatalf("export --all: %d %q", code, errs)
	}
	other := filepath.Join(t.TempDir(), "other.db")
	otherConf := filepath.Join(c.dir, "other.toml")
	os.WriteFile(otherConf, []byte(fmt.Sprintf("[queue]\npath = %q\n", other)), 0o644)
	if code, out, errs := runHerald(t, nil, "suppress", "import", "--config", otherConf, all); code != 0 || !strings.Contains(out, "imported 6 addresses into the example.com, other.example list") {
		t.Fatalf("import of export --all into a queue without providers: %d %q %q", code, out, errs)
	}
	if code, out, _ := runHerald(t, nil, "suppress", "export", "--all", "--config", otherConf); code != 0 || strings.Count(out, "other.example,") != 3 || strings.Count(out, "\nexample.com,") != 3 {
		t.Fatalf("the round trip changed the lists: %d\n%s", code, out)
	}
	if code, out, _ := suppress("remove", "u3@example.com", "u9@example.com"); code != 0 || !strings.Contains(out, "removed 1 of 2") {
		t.Fatalf("remove: %d %q", code, out)
	}
	if code, _, errs := suppress("add", "not-an-address"); code != exitInput || !strings.Contains(errs, "not a valid address") {
		t.Fatalf("bad address: %d %q", code, errs)
	}
	if code, _, errs := suppress("frob"); code != exitInput || !strings.Contains(errs, `unknown action "frob"`) {
		t.Fatalf("bad action: %d %q", code, errs)
	}

	// The campaign skips u1 and u2 and sends to u3, taken off the list.
	code, out, errs := runHerald(t, nil, "send", "--config", c.conf)
	if code != 0 || !strings.Contains(out+errs, "2 suppressed") {
		t.Fatalf("send: %d\n%s\n%s", code, out, errs)
	}
	if s.Received("u1@example.com")+s.Received("u2@example.com") != 0 || s.Received("u3@example.com") != 1 || s.Stats().Messages != 18 {
		t.Fatalf("server got %d messages; u1 %d, u2 %d, u3 %d", s.Stats().Messages, s.Received("u1@example.com"), s.Received("u2@example.com"), s.Received("u3@example.com"))
	}
}

// A store from an earlier herald, with one suppression list for every
// domain: nothing is sent until its entries are moved onto a domain's list.
func TestLegacySuppressionListBlocksSending(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	c := newCampaign(t, s, 5, "")
	db, err := bolt.Open(filepath.Join(c.dir, "herald.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("suppression"))
		if err != nil {
			return err
		}
		return b.Put([]byte("u2@example.com"), []byte("550 5.1.1 no such user"))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	code, _, errs := runHerald(t, nil, "send", "--config", c.conf)
	if code != exitInput || !strings.Contains(errs, "1 suppressed addresses from an earlier herald") || !strings.Contains(errs, "herald suppress migrate") || s.Stats().Messages != 0 {
		t.Fatalf("send with a legacy list: exit %d, %d sent\n%s", code, s.Stats().Messages, errs)
	}
	if code, out, errs := runHerald(t, nil, "suppress", "migrate", "--config", c.conf); code != 0 || !strings.Contains(out, "moved 1 addresses onto the example.com list") {
		t.Fatalf("migrate: %d %q %q", code, out, errs)
	}
	if code, out, errs := runHerald(t, nil, "send", "--config", c.conf); code != 0 || s.Stats().Messages != 4 || s.Received("u2@example.com") != 0 {
		t.Fatalf("send after the migration: exit %d, %d sent\n%s\n%s", code, s.Stats().Messages, out, errs)
	}
}
