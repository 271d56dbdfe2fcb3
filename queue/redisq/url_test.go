package redisq

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestParseURL checks which client each scheme makes, without connecting.
func TestParseURL(t *testing.T) {
	t.Run("single", func(t *testing.T) {
		v, err := parseURL("redis://u:pw@127.0.0.1:6380/3?dial_timeout=2s")
		if err != nil {
			t.Fatal(err)
		}
		o, ok := v.(*redis.Options)
		if !ok {
			t.Fatalf("got %T", v)
		}
		if o.Addr != "127.0.0.1:6380" || o.DB != 3 || o.Username != "u" || o.Password != "pw" || o.DialTimeout != 2*time.Second || o.TLSConfig != nil {
			t.Errorf("%+v", o)
		}
		if o.MaxRetries != defaultMaxRetries || o.MinRetryBackoff != defaultMinRetryBackoff || o.MaxRetryBackoff != defaultMaxRetryBackoff {
			t.Errorf("retry defaults not applied: %d %v %v", o.MaxRetries, o.MinRetryBackoff, o.MaxRetryBackoff)
		}
	})
	t.Run("tls", func(t *testing.T) {
		v, err := parseURL("rediss://127.0.0.1:6380/0?max_retries=-1")
		if err != nil {
			t.Fatal(err)
		}
		o := v.(*redis.Options)
		if o.TLSConfig == nil || o.MaxRetries != -1 {
			t.Errorf("tls %v, max retries %d (the URL's own setting must win)", o.TLSConfig, o.MaxRetries)
		}
	})
	t.Run("unix", func(t *testing.T) {
		v, err := parseURL("unix:///tmp/x/redis.sock?db=2")
		if err != nil {
			t.Fatal(err)
		}
		o := v.(*redis.Options)
		if o.Network != "unix" || o.Addr != "/tmp/x/redis.sock" || o.DB != 2 {
			t.Errorf("%+v", o)
		}
	})
	t.Run("cluster", func(t *testing.T) {
		v, err := parseURL("redis+cluster://u:pw@127.0.0.1:7000?addr=127.0.0.1:7001&addr=127.0.0.1:7002")
		if err != nil {
			t.Fatal(err)
		}
		o, ok := v.(*redis.ClusterOptions)
		if !ok {
			t.Fatalf("got %T", v)
		}
		if !slices.Equal(o.Addrs, []string{"127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"}) || o.Username != "u" || o.Password != "pw" || o.TLSConfig != nil {
			t.Errorf("%+v", o)
		}
		// Retried by the cluster client, each time on the master the slot
		// map then names, not by the node that failed; a dead node is
		// dialled once per try, briefly.
		if o.MaxRetries != -1 || o.MaxRedirects != clusterMaxRedirects || o.MinRetryBackoff != defaultMinRetryBackoff || o.MaxRetryBackoff != defaultMaxRetryBackoff {
			t.Errorf("retries: node %d, cluster %d, backoff %v..%v", o.MaxRetries, o.MaxRedirects, o.MinRetryBackoff, o.MaxRetryBackoff)
		}
		if o.DialTimeout != defaultDialTimeout || o.DialerRetries != 1 {
			t.Errorf("dial timeout %v, dialer retries %d", o.DialTimeout, o.DialerRetries)
		}
		v, err = parseURL("redis+cluster://127.0.0.1:7000?max_redirects=2&dial_timeout=5s&dialer_retries=3")
		if o := v.(*redis.ClusterOptions); err != nil || o.MaxRedirects != 2 || o.MaxRetries != 0 || o.DialTimeout != 5*time.Second || o.DialerRetries != 3 {
			t.Errorf("the URL's own settings must win: %+v %v", o, err)
		}
		for _, u := range []string{"redis+cluster://127.0.0.1:7000/", "redis+cluster://127.0.0.1:7000/0"} {
			if _, err := parseURL(u); err != nil {
				t.Errorf("%s: %v", u, err)
			}
		}
	})
	t.Run("cluster tls", func(t *testing.T) {
		v, err := parseURL("rediss+cluster://127.0.0.1:7000")
		if err != nil {
			t.Fatal(err)
		}
		if o := v.(*redis.ClusterOptions); o.TLSConfig == nil || o.TLSConfig.ServerName != "127.0.0.1" {
			t.Errorf("%+v", o.TLSConfig)
		}
	})
	t.Run("sentinel", func(t *testing.T) {
		v, err := parseURL("redis+sentinel://su:spw@127.0.0.1:26379/2?master_name=mymaster&addr=127.0.0.1:26380&password=mpw")
		if err != nil {
			t.Fatal(err)
		}
		o, ok := v.(*redis.FailoverOptions)
		if !ok {
			t.Fatalf("got %T", v)
		}
		if o.MasterName != "mymaster" || !slices.Equal(o.SentinelAddrs, []string{"127.0.0.1:26379", "127.0.0.1:26380"}) ||
			o.DB != 2 || o.SentinelUsername != "su" || o.SentinelPassword != "spw" || o.Password != "mpw" || o.TLSConfig != nil {
			t.Errorf("%+v", o)
		}
		if o.MaxRetries != defaultMaxRetries || o.DialTimeout != defaultDialTimeout {
			t.Errorf("max retries %d, dial timeout %v", o.MaxRetries, o.DialTimeout)
		}
	})
	t.Run("sentinel tls", func(t *testing.T) {
		v, err := parseURL("rediss+sentinel://127.0.0.1:26379?master_name=m")
		if err != nil {
			t.Fatal(err)
		}
		if o := v.(*redis.FailoverOptions); o.TLSConfig == nil {
			t.Error("no TLS")
		}
	})
	for _, tt := range []struct{ url, want string }{
		{"http://127.0.0.1:6379", "scheme"},
		{"127.0.0.1:6379", "no scheme"},
		{"redis+mesh://127.0.0.1:6379", "unknown scheme"},
		{"unix+cluster:///tmp/s", "unknown scheme"},
		{"redis+sentinel://127.0.0.1:26379", "master_name"},
		{"redis+cluster://127.0.0.1:7000/3", "only database 0"},
		{"redis+cluster://127.0.0.1:7000?addr=nohost", "addr"},
		{"redis+cluster://127.0.0.1:7000?bogus=1", "unexpected option"},
		{"redis+sentinel://127.0.0.1:26379?master_name=m&bogus=1", "unexpected option"},
		// Reads from replicas, which lag behind their master.
		{"redis+cluster://127.0.0.1:7000?read_only=true", "read_only"},
		{"redis+cluster://127.0.0.1:7000?route_by_latency=true", "route_by_latency"},
		{"redis+cluster://127.0.0.1:7000?route_randomly=true", "route_randomly"},
		{"redis+sentinel://127.0.0.1:26379?master_name=m&replica_only=true", "replica_only"},
		// go-redis's failover client panics on these.
		{"redis+sentinel://127.0.0.1:26379?master_name=m&route_by_latency=true", "route_by_latency"},
		{"redis+sentinel://127.0.0.1:26379?master_name=m&route_randomly=true", "route_randomly"},
	} {
		if _, err := parseURL(tt.url); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one that mentions %q", tt.url, err, tt.want)
		}
	}
}
