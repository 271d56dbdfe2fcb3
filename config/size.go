package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Size is a number of bytes, written in TOML as an integer (10485760) or
// a string with a unit ("10MB", "512 KB", "1GiB"). The units are powers of
// 1024: KB = KiB = K = 1024 bytes, MB = MiB = M, GB = GiB = G.
type Size struct {
	Bytes int64
	bad   string // what the file said, when it is not a size (reported by validate with its key)
}

// UnmarshalTOML takes an integer or a string with a unit. It never fails:
// a value that is not a size is kept for validate, which names the key.
func (s *Size) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		s.Bytes = v
	case string:
		n, err := ParseSize(v)
		if err != nil {
			s.bad = v
		}
		s.Bytes = n
	default:
		s.bad = fmt.Sprint(v)
	}
	return nil
}

// ParseSize reads "10MB", "512 KB", "1GiB" or "10485760" (bytes).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	var unit int64
	switch strings.ToUpper(strings.TrimSpace(t[i:])) {
	case "", "B":
		unit = 1
	case "K", "KB", "KIB":
		unit = 1 << 10
	case "M", "MB", "MIB":
		unit = 1 << 20
	case "G", "GB", "GIB":
		unit = 1 << 30
	default:
		return 0, fmt.Errorf("%q is not a size (units: B, KB, MB, GB)", s)
	}
	if n > math.MaxInt64/unit {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * unit, nil
}

// String writes the size with the largest unit that divides it.
func (s Size) String() string { return FormatSize(s.Bytes) }

// FormatSize writes n bytes as "10MB", "1500KB" or "1000 bytes".
func FormatSize(n int64) string {
	for _, u := range []struct {
		name string
		v    int64
	}{{"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}} {
		if n >= u.v && n%u.v == 0 {
			return fmt.Sprintf("%d%s", n/u.v, u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}
