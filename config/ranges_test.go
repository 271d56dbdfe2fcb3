package config

import (
	"strings"
	"testing"
)

// Every numeric key has a range, and a 0 written where 0 means nothing is
// refused by name instead of silently becoming the default.
func TestNumericRanges(t *testing.T) {
	t.Parallel()
	d := dir(t)
	provider := func(kv string) func(string) string {
		return func(s string) string { return strings.Replace(s, `port = 2525`, "port = 2525\n"+kv, 1) }
	}
	section := func(text string) func(string) string { return func(s string) string { return s + "\n" + text + "\n" } }
	refused := []struct {
		edit func(string) string
		want string
	}{
		{provider("connections = 0"), "provider[0].connections: 0 means nothing here: between 1 and 1000"},
		{provider("connections = 5000"), "provider[0].connections: 5000: between 1 and 1000"},
		{provider("per_connection = 0"), "provider[0].per_connection: 0 means nothing here"},
		{provider(`timeout = "0s"`), "provider[0].timeout: 0 means nothing here"},
		{provider(`timeout = "-5s"`), "provider[0].timeout: -5s: between 1ms and 1h0m0s"},
		{provider(`idle_timeout = "0"`), "provider[0].idle_timeout: 0 means nothing here"},
		{provider(`cooldown = "48h"`), "provider[0].cooldown: 48h0m0s: between"},
		{provider("rate = 10\nburst = 0"), "provider[0].burst: 0 means nothing here"},
		{provider("rate = -1"), "provider[0].rate: -1: between 0.0001 and 1000000, or 0 for unlimited"},
		{provider("daily = -2"), "provider[0].daily: -2:"},
		{provider("weight = 0"), "provider[0].weight: 0 means nothing here"},
		{provider("priority = -1"), "provider[0].priority: -1: between 1 and 1000, or 0 for the first rank"},
		{func(s string) string { return strings.Replace(s, `port = 2525`, `port = 0`, 1) }, "provider[0].port: 0 means nothing here"},
		{section("[retry]\nmax_attempts = 0"), "retry.max_attempts: 0 means nothing here: between 1 and 100"},
		{section("[retry]\nmax_attempts = -1"), "retry.max_attempts: -1:"},
		{section("[retry]\nbackoff = \"0s\""), "retry.backoff: 0 means nothing here"},
		{func(s string) string {
			return strings.Replace(s, `recipients = "recipients.csv"`, "recipients = \"recipients.csv\"\npolicy_minimum = 0", 1)
		}, "campaign.policy_minimum: 0 means nothing here"},
		{func(s string) string {
			return strings.Replace(s, `recipients = "recipients.csv"`, "recipients = \"recipients.csv\"\npolicy_threshold = 1.5", 1)
		}, "campaign.policy_threshold: 1.5: between"},
		{section("[queue]\nbackend = \"redis\"\nlease = \"0s\""), "queue.lease: 0 means nothing here"},
		{section("[domain.\"Gmail.com\"]\nrate = 5\nburst = 0"), `domain."gmail.com".burst: 0 means nothing here`},
		{section("[domain.\"gmail.com\"]\ncooldown = \"-1s\""), `domain."gmail.com".cooldown: -1s:`},
	}
	for _, tt := range refused {
		text := tt.edit(valid)
		_, err := Parse(text, d, env(nil))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q:\n got %v\nwant %q", text[strings.Index(text, "[[provider]]"):], err, tt.want)
		}
	}
	// Where 0 has a meaning of its own, it is taken.
	for _, kv := range []string{"rate = 0", "daily = 0", "priority = 0", "rate = 0\nburst = 3", "connections = 1000"} {
		c, err := Parse(provider(kv)(valid), d, env(nil))
		if err != nil {
			t.Errorf("%s: %v", kv, err)
			continue
		}
		if p := c.Provider[0]; kv == "rate = 0" && (p.Rate != 0 || p.Burst != 0) {
			t.Errorf("rate = 0: got rate %v burst %d", p.Rate, p.Burst)
		}
	}
	// The same in an inline array of providers.
	inline := "provider = [{name = \"a\", host = \"127.0.0.1\", tls = \"none\", connections = 0}]\n" + campaignOnly
	if _, err := Parse(inline, d, env(nil)); err == nil || !strings.Contains(err.Error(), "provider[0].connections: 0 means nothing here") {
		t.Errorf("inline providers: %v", err)
	}
	if _, err := Parse(section("[domain.\"gmail.com\"]\nrate = 0")(valid), d, env(nil)); err != nil {
		t.Errorf("domain rate = 0 (unlimited): %v", err)
	}
}
