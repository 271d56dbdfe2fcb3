package check

import (
	"context"
	"strings"
	"testing"

	"github.com/heraldmail/herald/internal/dnstest"
)

// TestResolverTCP: an answer too long for UDP comes truncated, and the
// resolver --resolver makes asks the same server again over TCP.
func TestResolverTCP(t *testing.T) {
	t.Parallel()
	long := []string{strings.Repeat("a", 700), strings.Repeat("b", 700), strings.Repeat("c", 700)}
	dns := dnstest.Start(t, dnstest.Zone{"big.example": long})
	r, err := NewResolver(dns.Addr())
	if err != nil {
		t.Fatal(err)
	}
	got := lookupTXT(context.Background(), r, "big.example")
	if got.err != nil || strings.Join(got.txt, ",") != strings.Join(long, ",") {
		t.Fatalf("%v: %d records", got.err, len(got.txt))
	}
	if none := lookupTXT(context.Background(), r, "absent.example"); none.err != nil || len(none.txt) != 0 {
		t.Fatalf("a name that does not exist: %+v", none)
	}
	if _, err := NewResolver("127.0.0.1"); err == nil {
		t.Fatal("an address without a port was taken")
	}
}
