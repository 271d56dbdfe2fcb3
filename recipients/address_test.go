package recipients

import (
	"strings"
	"testing"
)

func TestASCIIDomain(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		bad      bool
	}{
		{"user@例子.测试", "user@xn--fsqu00a.xn--0zwm56d", false},
		{"user@xn--fsqu00a.xn--0zwm56d", "user@xn--fsqu00a.xn--0zwm56d", false},
		{"用户@例子.测试", "用户@xn--fsqu00a.xn--0zwm56d", false}, // the local part is left alone
		{"user@Bücher.de", "user@xn--bcher-kva.de", false},
		{"user@例子。测试", "user@xn--fsqu00a.xn--0zwm56d", false}, // ideographic full stop
		{"User@Example.COM", "User@Example.COM", false},       // ASCII: as it is
		{"user@[192.0.2.1]", "user@[192.0.2.1]", false},
		{"user@xn--zz.com", "", true}, // not valid Punycode
		{"user@xn--a.com", "", true},
		{"user@例子.-测试", "", true}, // a label starting with a hyphen
	}
	for _, tt := range tests {
		got, err := ASCIIDomain(tt.in)
		if (err != nil) != tt.bad || (!tt.bad && got != tt.want) {
			t.Errorf("ASCIIDomain(%q) = %q, %v; want %q (error: %v)", tt.in, got, err, tt.want, tt.bad)
		}
	}
}

func TestCheckAddressIDN(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"user@例子.测试", "用户@example.com", "user@xn--fsqu00a.xn--0zwm56d", "user@bücher.de"} {
		if why := CheckAddress(ok); why != "" {
			t.Errorf("%q: %s", ok, why)
		}
	}
	for _, bad := range []string{"user@xn--zz.com", "user@例子.-测试", "user@xn--a.example"} {
		if why := CheckAddress(bad); !strings.Contains(why, "internationalized domain name") {
			t.Errorf("%q: got %q, want an invalid IDN", bad, why)
		}
	}
}

func TestNeedsSMTPUTF8(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"用户@example.com": true, "josé@example.com": true,
		"user@例子.测试": false, "user@example.com": false,
	} {
		if got := NeedsSMTPUTF8(addr); got != want {
			t.Errorf("NeedsSMTPUTF8(%q) = %v", addr, got)
		}
	}
}

// TestKeyIDN: the Unicode and the A-label spelling of a domain are one
// recipient (one key), the key a bounce for the address as sent finds.
func TestKeyIDN(t *testing.T) {
	t.Parallel()
	if a, b := Key("User@例子.测试"), Key("user@XN--FSQU00A.xn--0zwm56d"); a != b || a != "user@xn--fsqu00a.xn--0zwm56d" {
		t.Fatalf("keys %q and %q", a, b)
	}
	if k := Key("Ada@Example.com"); k != "ada@example.com" {
		t.Fatalf("key %q", k)
	}
}

// TestReaderIDN: an invalid IDN domain is reported with its line; a valid
// one is planned with its address as written and its key in A-labels.
func TestReaderIDN(t *testing.T) {
	t.Parallel()
	g, err := readAll(t, "email,name\nuser@例子.测试,A\nuser@xn--zz.com,B\nuser@xn--fsqu00a.xn--0zwm56d,C\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(g.problems) != 1 || g.problems[0].Line != 3 || !strings.Contains(g.problems[0].Reason, "internationalized") {
		t.Fatalf("problems %v", g.problems)
	}
	if len(g.rows) != 2 || g.rows[0].Email != "user@例子.测试" || g.rows[0].Key != "user@xn--fsqu00a.xn--0zwm56d" || g.rows[1].Key != g.rows[0].Key {
		t.Fatalf("rows %+v", g.rows)
	}
}
