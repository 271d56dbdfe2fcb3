package config

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// shortRSA is a 512-bit RSA key (PKCS#1): too weak for DKIM.
const shortRSA = `-----BEGIN RSA PRIVATE KEY-----
MIIBOgIBAAJBAN8gQivn/Da8i2O7Ou5nsQV9EG4js1eB7e0TFjWL7yXx0sM4Egce
u7xcJp4lY00+odNwydNqyglLyoQLoEo3uQcCAwEAAQJBAKmMUbwbZEQTsbfvJjDT
CmkpR7rp1fXA/ZMQ1eeKlgc195QleOK5jvnkTLp16xuEHA4pGQKB1btDWwhP3Xk1
EoECIQD2gRpHSphul5fjmUwtwpZQn2Q3bGki6caLndazNVUN2QIhAOe4nHh8hbeD
1GPCqmF/EHzdqUKvP2Ek5vddaWmPV1HfAiArLgJEarS46qUYoUnO2j8qcEFF1B+2
lezJmCR7z+POQQIgOh3mOJ3al7Vbro2jWAKbawXZLt1vQvkTaJUoHA6UcvcCIEb8
+kaIExW4rQus8alj7D0YqSzwWSPUvPWolLWxqcl2
-----END RSA PRIVATE KEY-----
`

// keyFiles writes private keys of every kind into d and returns their names.
func keyFiles(t *testing.T, d string) map[string]string {
	t.Helper()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pkcs8 := func(k any) []byte {
		b, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: b})
	}
	files := map[string][]byte{
		"rsa1.pem":    pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}),
		"rsa8.pem":    pkcs8(rsaKey),
		"ed.pem":      pkcs8(edKey),
		"ec.pem":      pkcs8(ecKey),
		"short.pem":   []byte(shortRSA),
		"garbage.pem": []byte("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"),
		"cert.pem":    []byte("-----BEGIN CERTIFICATE-----\nbm90IGEga2V5\n-----END CERTIFICATE-----\n"),
		"text.pem":    []byte("hello"),
	}
	names := map[string]string{}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(d, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
		names[name] = string(b)
	}
	return names
}

const (
	secret      = "0123456789abcdef-test-secret"
	unsubBlock  = "\n[unsubscribe]\nurl = \"https://news.example.com/unsubscribe\"\nmailto = \"unsubscribe@example.com\"\nsecret_env = \"UNSUB\"\n"
	dkimBlock   = "\n[dkim]\ndomain = \"example.com\"\nselector = \"herald2026\"\nprivate_key = \"rsa1.pem\"\n"
	listIDAfter = `recipients = "recipients.csv"`
)

func withCampaign(s, keys string) string {
	return strings.Replace(s, listIDAfter, listIDAfter+"\n"+keys, 1)
}

func TestDeliverabilityValid(t *testing.T) {
	t.Parallel()
	d := dir(t)
	keyFiles(t, d)
	for _, key := range []string{"rsa1.pem", "rsa8.pem", "ed.pem"} {
		text := withCampaign(valid, "list_id = \"Herald News <news.example.com>\"\nverp = true\nbounce_address = \"bounces@example.com\"") +
			unsubBlock + strings.Replace(dkimBlock, "rsa1.pem", key, 1)
		c, err := Parse(text, d, env(map[string]string{"UNSUB": secret}))
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if c.DKIM.Key == nil || c.DKIM.PrivateKey != filepath.Join(d, key) {
			t.Errorf("%s: key not read or path not resolved: %v", key, c.DKIM)
		}
		if string(c.Unsubscribe.Secret) != secret {
			t.Error("the unsubscribe secret was not read from the environment")
		}
		if !c.Campaign.VERP || c.Campaign.BounceAddress != "bounces@example.com" || c.Campaign.ListID != "Herald News <news.example.com>" {
			t.Errorf("campaign keys: %+v", c.Campaign)
		}
		for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprint(*c.DKIM), fmt.Sprint(*c.Unsubscribe)} {
			if strings.Contains(s, secret) || strings.Contains(s, "PRIVATE") {
				t.Fatalf("printing the config shows a secret: %s", s)
			}
		}
	}
	// Without the sections: nothing required.
	c, err := Parse(valid, d, env(nil))
	if err != nil || c.Unsubscribe != nil || c.DKIM != nil {
		t.Fatalf("absent sections: %v %+v %+v", err, c.Unsubscribe, c.DKIM)
	}
	// A worker needs only the secrets: url, list and bounce come with the
	// campaign from the queue.
	worker := "[queue]\nbackend = \"redis\"\n" + valid[strings.Index(valid, "[[provider]]"):] +
		"\n[unsubscribe]\nsecret_env = \"UNSUB\"\n" + dkimBlock
	if _, err := ParseWorker(worker, d, env(map[string]string{"UNSUB": secret})); err != nil {
		t.Fatalf("worker: %v", err)
	}
}

func TestDeliverabilityProblems(t *testing.T) {
	t.Parallel()
	d := dir(t)
	keys := keyFiles(t, d)
	good := env(map[string]string{"UNSUB": secret})
	tests := []struct {
		name string
		text string
		env  func(string) string
		want []string
	}{
		{"list_id without brackets", withCampaign(valid, `list_id = "news.example.com"`), good, []string{"campaign.list_id:"}},
		{"list_id without a dot", withCampaign(valid, `list_id = "News <news>"`), good, []string{"campaign.list_id:"}},
		{"list_id with a space", withCampaign(valid, `list_id = "<news letter.example.com>"`), good, []string{"campaign.list_id:"}},
		{"list_id not ascii", withCampaign(valid, `list_id = "Nöws <news.example.com>"`), good, []string{"campaign.list_id:", "ASCII"}},
		{"list_id line break", withCampaign(valid, `list_id = "News\r\nBcc: x <news.example.com>"`), good, []string{"campaign.list_id:"}},
		{"verp without bounce", withCampaign(valid, `verp = true`), good, []string{"campaign.verp: needs campaign.bounce_address"}},
		{"bounce not an address", withCampaign(valid, `bounce_address = "bounces"`), good, []string{"campaign.bounce_address:"}},
		{"bounce with a name", withCampaign(valid, `bounce_address = "Bounces <bounces@example.com>"`), good, []string{"campaign.bounce_address:", "bare"}},
		{"bounce literal for verp", withCampaign(valid, "verp = true\nbounce_address = 'bounces@[192.0.2.1]'"), good, []string{"campaign.bounce_address: cannot carry VERP"}},
		{"reserved List-Id header", valid + "\n[campaign.headers]\nList-Id = \"<x.example.com>\"\n", good, []string{"campaign.headers.List-Id: set by herald"}},
		{"reserved List-Unsubscribe header", valid + "\n[campaign.headers]\nlist-unsubscribe = \"<https://x>\"\n", good, []string{"campaign.headers.list-unsubscribe: set by herald"}},
		{"unsubscribe url missing", valid + strings.Replace(unsubBlock, `url = "https://news.example.com/unsubscribe"`, "", 1), good, []string{"unsubscribe.url: required"}},
		{"unsubscribe url http", valid + strings.Replace(unsubBlock, "https://", "http://", 1), good, []string{"unsubscribe.url:", "https"}},
		{"unsubscribe url relative", valid + strings.Replace(unsubBlock, "https://news.example.com/unsubscribe", "/unsubscribe", 1), good, []string{"unsubscribe.url:"}},
		{"unsubscribe mailto", valid + strings.Replace(unsubBlock, "unsubscribe@example.com", "mailto:unsubscribe@example.com", 1), good, []string{"unsubscribe.mailto:"}},
		{"unsubscribe mailto with a name", valid + strings.Replace(unsubBlock, `"unsubscribe@example.com"`, `"U <unsubscribe@example.com>"`, 1), good, []string{"unsubscribe.mailto:"}},
		{"unsubscribe secret_env missing", valid + strings.Replace(unsubBlock, `secret_env = "UNSUB"`, "", 1), good, []string{"unsubscribe.secret_env: required"}},
		{"unsubscribe secret unset", valid + unsubBlock, env(nil), []string{"unsubscribe.secret_env: environment variable UNSUB is empty or not set"}},
		{"unsubscribe secret short", valid + unsubBlock, env(map[string]string{"UNSUB": "short-s3cret"}), []string{"unsubscribe.secret_env:", "shorter than 16 bytes"}},
		{"unsubscribe unknown key", valid + unsubBlock + "secret = \"x\"\n", good, []string{"unsubscribe.secret: unknown key"}},
		{"dkim domain missing", valid + strings.Replace(dkimBlock, `domain = "example.com"`, "", 1), good, []string{"dkim.domain: required"}},
		{"dkim domain bad", valid + strings.Replace(dkimBlock, `"example.com"`, `"exa mple.com"`, 1), good, []string{"dkim.domain:", "not a domain"}},
		{"dkim domain no dot", valid + strings.Replace(dkimBlock, `"example.com"`, `"localhost"`, 1), good, []string{"dkim.domain:"}},
		{"dkim selector missing", valid + strings.Replace(dkimBlock, `selector = "herald2026"`, "", 1), good, []string{"dkim.selector: required"}},
		{"dkim selector bad", valid + strings.Replace(dkimBlock, `"herald2026"`, `"s;1"`, 1), good, []string{"dkim.selector:"}},
		{"dkim key missing", valid + strings.Replace(dkimBlock, `private_key = "rsa1.pem"`, "", 1), good, []string{"dkim.private_key: required"}},
		{"dkim key no file", valid + strings.Replace(dkimBlock, "rsa1.pem", "nope.pem", 1), good, []string{"dkim.private_key:", "no such file"}},
		{"dkim key not pem", valid + strings.Replace(dkimBlock, "rsa1.pem", "text.pem", 1), good, []string{"dkim.private_key:", "no PEM block"}},
		{"dkim key corrupt", valid + strings.Replace(dkimBlock, "rsa1.pem", "garbage.pem", 1), good, []string{"dkim.private_key:", "cannot parse"}},
		{"dkim key a certificate", valid + strings.Replace(dkimBlock, "rsa1.pem", "cert.pem", 1), good, []string{"dkim.private_key:", "CERTIFICATE"}},
		{"dkim key ecdsa", valid + strings.Replace(dkimBlock, "rsa1.pem", "ec.pem", 1), good, []string{"dkim.private_key:", "want RSA or Ed25519"}},
		{"dkim key short", valid + strings.Replace(dkimBlock, "rsa1.pem", "short.pem", 1), good, []string{"dkim.private_key:", "512-bit"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse(tt.text, d, tt.env)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "short-s3cret") || strings.Contains(err.Error(), secret) {
				t.Errorf("the error shows the secret: %v", err)
			}
			for name, content := range keys {
				body := strings.TrimSpace(content)
				if lines := strings.Split(body, "\n"); len(lines) > 2 {
					body = lines[1] // a line of the key itself
				}
				if len(body) > 8 && strings.Contains(err.Error(), body) {
					t.Errorf("the error shows the content of %s: %v", name, err)
				}
			}
		})
	}
}
