package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/heraldmail/herald/sink"
)

func TestBenchJSONShape(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	code, out, errOut := runHerald(t, nil, "bench", "--server", s.Addr(), "--connections", "3", "--messages", "60",
		"--rcpts", "2", "--size", "1500", "--reuse", "7", "--json", "--quiet")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var rep map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range rep {
			if !yield(k) {
				return
			}
		}
	})
	want := []string{"connections", "duration_s", "errors", "latency_ms", "messages", "mode", "msgs_per_s",
		"offered_rate", "outcomes", "pipelining", "recipients", "server", "size"}
	if !slices.Equal(keys, want) {
		t.Fatalf("keys %v, want %v", keys, want)
	}
	var r struct {
		Server      string  `json:"server"`
		Mode        string  `json:"mode"`
		Connections int     `json:"connections"`
		OfferedRate float64 `json:"offered_rate"`
		Messages    int64   `json:"messages"`
		Recipients  int64   `json:"recipients"`
		Errors      int64   `json:"errors"`
		DurationS   float64 `json:"duration_s"`
		MsgsPerS    float64 `json:"msgs_per_s"`
		Pipelining  bool    `json:"pipelining"`
		Size        int     `json:"size"`
		Latency     map[string]map[string]float64
		Outcomes    map[string]int64 `json:"outcomes"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(rep["latency_ms"], &r.Latency); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if r.Server != s.Addr() || r.Mode != "closed" || r.Connections != 3 || r.OfferedRate != 0 || r.Messages != 60 ||
		r.Messages != st.Messages || r.Recipients != st.Recipients || r.Recipients != 120 || r.Errors != 0 ||
		r.DurationS <= 0 || r.MsgsPerS <= 0 || !r.Pipelining || r.Size != 1500 || r.Outcomes["sent"] != 60 {
		t.Fatalf("report %+v; server %+v", r, st)
	}
	for _, stage := range []string{"message", "connect", "ehlo", "mail", "rcpt", "data", "body", "quit"} {
		l, ok := r.Latency[stage]
		if !ok || len(l) != 5 {
			t.Fatalf("latency_ms.%s = %v", stage, l)
		}
		for _, p := range []string{"p50", "p90", "p99", "p999", "max"} {
			if _, ok := l[p]; !ok {
				t.Fatalf("latency_ms.%s has no %s", stage, p)
			}
		}
		if l["max"] <= 0 || l["p50"] > l["p90"] || l["p90"] > l["p99"] || l["p99"] > l["p999"] || l["p999"] > l["max"] {
			t.Fatalf("latency_ms.%s = %v", stage, l)
		}
	}
	for _, class := range []string{"sent", "transient", "reconnect", "ambiguous", "throttle", "auth", "policy", "permanent"} {
		if _, ok := r.Outcomes[class]; !ok {
			t.Fatalf("outcomes has no %s: %v", class, r.Outcomes)
		}
	}
}

func TestBenchExitStatus(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{Faults: sink.Faults{Rules: []*sink.Rule{{Match: "r1-", Stage: sink.StageRcpt, Code: 550, Enhanced: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}}}})
	code, out, errOut := runHerald(t, nil, "bench", "--server", s.Addr(), "--messages", "10", "--rcpts", "2", "--connections", "2", "--pipelining", "off")
	if code != 1 || !strings.Contains(out, "permanent 10") || !strings.Contains(out, "sent 10") || !strings.Contains(out, "pipelining false") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--server", "192.0.2.7:25"}, "--allow-remote"},
		{[]string{"--server", "nohostport"}, "--server"},
		{[]string{"--tls", "ssl"}, "--tls"},
		{[]string{"--pipelining", "on"}, "--pipelining"},
		{[]string{"--connections", "0x"}, "connections"},
		{[]string{"--size", "10"}, "--size"},
		{[]string{"--auth-user", "u"}, "--auth-password-env"},
		{[]string{"--auth-user", "u", "--auth-password-env", "HERALD_BENCH_UNSET_VAR"}, "HERALD_BENCH_UNSET_VAR"},
		{[]string{"--insecure"}, "--tls"},
	} {
		code, _, errOut := runHerald(t, nil, append([]string{"bench", "--messages", "1"}, tt.args...)...)
		if code != 2 || !strings.Contains(errOut, tt.want) {
			t.Fatalf("%v: exit %d, stderr %q; want 2 naming %s", tt.args, code, errOut, tt.want)
		}
	}
}

func TestBenchWrongPasswordIsAuth(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{Auth: &sink.Credentials{Username: "bench", Password: "right-one"}, AllowInsecureAuth: true})
	env := []string{"HERALD_BENCH_PW=wrong-pw-4711"}
	code, out, errOut := runHerald(t, env, "bench", "--server", s.Addr(), "--messages", "5", "--auth-user", "bench", "--auth-password-env", "HERALD_BENCH_PW", "--json")
	if code != 1 || strings.Contains(out+errOut, "wrong-pw-4711") {
		t.Fatalf("exit %d, or the password was printed:\n%s\n%s", code, out, errOut)
	}
	var r struct {
		Messages int64            `json:"messages"`
		Outcomes map[string]int64 `json:"outcomes"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Messages != 0 || r.Outcomes["auth"] == 0 {
		t.Fatalf("%v %+v", err, r)
	}
	code, _, errOut = runHerald(t, []string{"HERALD_BENCH_PW=right-one"}, "bench", "--server", s.Addr(), "--messages", "5", "--auth-user", "bench", "--auth-password-env", "HERALD_BENCH_PW", "--quiet")
	if code != 0 || s.Stats().Messages != 5 {
		t.Fatalf("right password: exit %d %s", code, errOut)
	}
}

func TestBenchOpenLoop(t *testing.T) {
	t.Parallel()
	s := startSink(t, sink.Config{})
	code, out, errOut := runHerald(t, nil, "bench", "--server", s.Addr(), "--rate", "100", "--duration", "500ms", "--json", "--quiet")
	var r struct {
		Mode        string  `json:"mode"`
		OfferedRate float64 `json:"offered_rate"`
		Messages    int64   `json:"messages"`
		DurationS   float64 `json:"duration_s"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 0 {
		t.Fatalf("exit %d %v: %s %s", code, err, out, errOut)
	}
	if r.Mode != "open" || r.OfferedRate != 100 || r.Messages != 50 || s.Stats().Messages != 50 || r.DurationS < 0.49 {
		t.Fatalf("%+v", r)
	}
}
