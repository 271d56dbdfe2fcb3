package config

import (
	"strings"
	"testing"
)

func TestMaxMessageSize(t *testing.T) {
	t.Parallel()
	d := dir(t)
	withSize := func(v string) string {
		return strings.Replace(valid, "recipients = \"recipients.csv\"\n", "recipients = \"recipients.csv\"\nmax_message_size = "+v+"\n", 1)
	}
	c, err := Parse(valid, d, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Campaign.MaxMessageSize == nil || c.Campaign.MaxMessageSize.Bytes != 10<<20 {
		t.Fatalf("default %+v, want 10 MB", c.Campaign.MaxMessageSize)
	}
	for v, want := range map[string]int64{
		"1048576": 1 << 20, `"10MB"`: 10 << 20, `"512 KB"`: 512 << 10, `"2mib"`: 2 << 20, `"1GB"`: 1 << 30, `"4096"`: 4096, `"3M"`: 3 << 20,
	} {
		c, err := Parse(withSize(v), d, env(nil))
		if err != nil {
			t.Errorf("%s: %v", v, err)
			continue
		}
		if got := c.Campaign.MaxMessageSize.Bytes; got != want {
			t.Errorf("%s: %d bytes, want %d", v, got, want)
		}
	}
	for v, want := range map[string]string{
		"0":                      "0 bytes: between 1KB and 1GB",
		"-5":                     "between 1KB and 1GB",
		"100":                    "between 1KB and 1GB",
		`"2GB"`:                  "between 1KB and 1GB",
		`"10 XB"`:                `"10 XB" is not a size`,
		`"MB"`:                   `"MB" is not a size`,
		`"1.5MB"`:                `"1.5MB" is not a size`,
		"1.5":                    `"1.5" is not a size`,
		`"99999999999999999999"`: "is not a size",
	} {
		_, err := Parse(withSize(v), d, env(nil))
		if err == nil || !strings.Contains(err.Error(), "campaign.max_message_size: ") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want campaign.max_message_size: ...%s", v, err, want)
		}
	}
}

func TestFormatSize(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{10 << 20: "10MB", 1536 << 10: "1536KB", 1 << 30: "1GB", 1000: "1000 bytes"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestSenderAddresses: the campaign's own addresses are sent with their
// domain in A-labels, so it must have them; a non-ASCII local part would
// need SMTPUTF8 on every message and is refused, naming the key.
func TestSenderAddresses(t *testing.T) {
	t.Parallel()
	d := dir(t)
	if _, err := Parse(strings.Replace(valid, "news@example.com", "news@例子.测试", 1), d, env(nil)); err != nil {
		t.Fatalf("an IDN domain: %v", err)
	}
	for _, tt := range []struct{ edit, want string }{
		{strings.Replace(valid, "news@example.com", "新闻@example.com", 1), "campaign.from: \"新闻@example.com\": the part before @ is not ASCII"},
		{strings.Replace(valid, "news@example.com", "news@xn--zz.com", 1), "campaign.from: \"news@xn--zz.com\": the domain is not a valid internationalized domain name"},
		{strings.Replace(valid, "[[provider]]", "reply_to = \"回复@example.com\"\n[[provider]]", 1), "campaign.reply_to: \"回复@example.com\": the part before @ is not ASCII"},
		{strings.Replace(valid, "[[provider]]", "bounce_address = \"b@xn--a.com\"\n[[provider]]", 1), "campaign.bounce_address: \"b@xn--a.com\": the domain is not a valid"},
	} {
		_, err := Parse(tt.edit, d, env(nil))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("got %v, want %q", err, tt.want)
		}
	}
}
