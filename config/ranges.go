package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// A numeric key's allowed values. Most keys take 0 (or leaving them out)
// to mean "the default"; for those, a 0 written in the file is refused,
// since the user meant something the key cannot do (connections = 0 sends
// nothing). Keys where 0 has a meaning of its own (rate = 0: unlimited)
// say what it means in zero.
type numeric struct {
	key      string
	val      float64 // seconds for a duration
	min, max float64
	zero     string // what an explicit 0 means; "" when 0 is refused
	dur      bool
}

// checkRanges reports every numeric key outside its range, and every key
// written as 0 where 0 means nothing. zeros holds the keys the file set to
// 0 (see explicitZeros); the values are after presets and defaults.
func (c *Config) checkRanges(zeros map[string]bool, bad func(key, format string, args ...any)) {
	day := float64(24 * time.Hour / time.Second)
	d := func(v Duration) float64 { return v.Seconds() }
	var keys []numeric
	add := func(n ...numeric) { keys = append(keys, n...) }

	cp := c.Campaign
	add(numeric{key: "campaign.policy_threshold", val: cp.PolicyThreshold, min: 0.0001, max: 1},
		numeric{key: "campaign.policy_minimum", val: float64(cp.PolicyMinimum), min: 1, max: 1e9},
		numeric{key: "campaign.bounce_threshold", val: cp.BounceThreshold, min: 0.0001, max: 1},
		numeric{key: "campaign.bounce_minimum", val: float64(cp.BounceMinimum), min: 1, max: 1e9},
		numeric{key: "campaign.complaint_threshold", val: cp.ComplaintThreshold, min: 0.00001, max: 1})

	add(numeric{key: "queue.lease", val: d(c.Queue.Lease), min: 3, max: day, dur: true})
	r := c.Retry
	add(numeric{key: "retry.max_attempts", val: float64(r.MaxAttempts), min: 1, max: 100},
		numeric{key: "retry.max_age", val: d(r.MaxAge), min: 0.001, max: 365 * day, dur: true},
		numeric{key: "retry.backoff", val: d(r.Backoff), min: 0.001, max: 30 * day, dur: true},
		numeric{key: "retry.max_backoff", val: d(r.MaxBackoff), min: 0.001, max: 30 * day, dur: true})

	for i, p := range c.Provider {
		k := fmt.Sprintf("provider[%d].", i)
		add(numeric{key: k + "port", val: float64(p.Port), min: 1, max: 65535},
			numeric{key: k + "rate", val: p.Rate, min: 0.0001, max: 1e6, zero: "unlimited"},
			numeric{key: k + "burst", val: float64(p.Burst), min: 1, max: 1e6},
			numeric{key: k + "connections", val: float64(p.Connections), min: 1, max: 1000},
			numeric{key: k + "per_connection", val: float64(p.PerConnection), min: 1, max: 1e7},
			numeric{key: k + "daily", val: float64(p.Daily), min: 1, max: 1e9, zero: "unlimited"},
			numeric{key: k + "timeout", val: d(p.Timeout), min: 0.001, max: 3600, dur: true},
			numeric{key: k + "idle_timeout", val: d(p.IdleTimeout), min: 0.001, max: 3600, dur: true},
			numeric{key: k + "cooldown", val: d(p.Cooldown), min: 0.001, max: day, dur: true},
			numeric{key: k + "priority", val: float64(p.Priority), min: 1, max: 1000, zero: "the first rank"},
			numeric{key: k + "weight", val: float64(p.Weight), min: 1, max: 1000})
	}
	names := make([]string, 0, len(c.Domain))
	for name := range c.Domain {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		dm := c.Domain[name]
		k := fmt.Sprintf("domain.%q.", name)
		add(numeric{key: k + "rate", val: dm.Rate, min: 0.0001, max: 1e6, zero: "unlimited"},
			numeric{key: k + "burst", val: float64(dm.Burst), min: 1, max: 1e6},
			numeric{key: k + "cooldown", val: d(dm.Cooldown), min: 0.001, max: day, dur: true})
	}
	b := c.Bounces
	add(numeric{key: "bounces.soft_limit", val: float64(b.SoftLimit), min: 1, max: 1000},
		numeric{key: "bounces.timeout", val: d(b.Timeout), min: 0.001, max: 3600, dur: true})

	for _, n := range keys {
		if zeros[n.key] {
			if n.zero == "" {
				bad(n.key, "0 means nothing here: %s (leave the key out for the default)", n.span())
			}
			continue
		}
		if n.val == 0 && (n.zero != "" || strings.HasSuffix(n.key, "burst")) {
			continue // 0 unset: unlimited, or a burst with no rate
		}
		if n.val < n.min || n.val > n.max {
			bad(n.key, "%s: %s", n.show(n.val), n.span())
		}
	}
}

func (n numeric) show(v float64) string {
	if n.dur {
		return time.Duration(v * float64(time.Second)).String()
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

func (n numeric) span() string {
	s := fmt.Sprintf("between %s and %s", n.show(n.min), n.show(n.max))
	if n.zero != "" {
		s += ", or 0 for " + n.zero
	}
	return s
}

// explicitZeros lists the keys the file sets to 0 (a number, or a duration
// string of zero length such as "0s"), named as the user writes them:
// provider[1].connections. The defaults cannot tell them from keys left out.
func explicitZeros(text string) map[string]bool {
	var raw map[string]any
	if _, err := toml.Decode(text, &raw); err != nil {
		return nil
	}
	zeros := map[string]bool{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, sub := range v {
				name := k
				if prefix == "domain" {
					name = fmt.Sprintf("%q", strings.ToLower(k))
				}
				if prefix != "" {
					name = prefix + "." + name
				}
				walk(name, sub)
			}
		case []map[string]any: // [[provider]]
			for i, sub := range v {
				walk(fmt.Sprintf("%s[%d]", prefix, i), sub)
			}
		case []any: // provider = [{…}, {…}]
			for i, sub := range v {
				walk(fmt.Sprintf("%s[%d]", prefix, i), sub)
			}
		case int64:
			if v == 0 {
				zeros[prefix] = true
			}
		case float64:
			if v == 0 {
				zeros[prefix] = true
			}
		case string:
			if dv, err := time.ParseDuration(v); err == nil && dv == 0 {
				zeros[prefix] = true
			}
		}
	}
	walk("", raw)
	return zeros
}
