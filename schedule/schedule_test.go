package schedule

import (
	"strings"
	"testing"
	"time"
)

func at(t *testing.T, loc *time.Location, s string) time.Time {
	t.Helper()
	v, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestNext(t *testing.T) {
	sh, _ := time.LoadLocation("Asia/Shanghai")
	ny, _ := time.LoadLocation("America/New_York")
	office, err := Parse("Asia/Shanghai", []string{"mon", "tue", "wed", "thu", "fri"}, "09:00-18:00")
	if err != nil {
		t.Fatal(err)
	}
	night, err := Parse("Asia/Shanghai", []string{"fri"}, "22:00-06:00")
	if err != nil {
		t.Fatal(err)
	}
	// 2026-12-07 is a Monday.
	for _, tt := range []struct {
		name string
		w    Window
		loc  *time.Location
		t    string // in loc (or the window's zone)
		want string // "" for t itself
	}{
		{"open", office, nil, "2026-12-07 10:30", ""},
		{"before opening", office, nil, "2026-12-07 07:00", "2026-12-07 09:00"},
		{"at closing", office, nil, "2026-12-07 18:00", "2026-12-08 09:00"},
		{"friday evening to monday", office, nil, "2026-12-11 19:00", "2026-12-14 09:00"},
		{"saturday", office, nil, "2026-12-12 12:00", "2026-12-14 09:00"},
		{"the recipient's zone", office, ny, "2026-12-07 08:59", "2026-12-07 09:00"},
		{"crossing midnight, evening", night, nil, "2026-12-11 23:00", ""},
		{"crossing midnight, morning after", night, nil, "2026-12-12 05:59", ""},
		{"crossing midnight, closed after", night, nil, "2026-12-12 06:00", "2026-12-18 22:00"},
		{"crossing midnight, thursday morning", night, nil, "2026-12-10 03:00", "2026-12-11 22:00"},
	} {
		loc := tt.loc
		if loc == nil {
			loc = sh
		}
		now := at(t, loc, tt.t)
		got := tt.w.Next(now, tt.loc)
		want := now
		if tt.want != "" {
			want = at(t, loc, tt.want)
		}
		if !got.Equal(want) {
			t.Errorf("%s: Next(%s) = %s, want %s", tt.name, tt.t, got.In(loc).Format("Mon 2006-01-02 15:04"), want.In(loc).Format("Mon 2006-01-02 15:04"))
		}
	}
	if d := office.Describe(at(t, sh, "2026-12-08 09:00"), nil); d != "opens Tue 09:00 Asia/Shanghai" {
		t.Errorf("Describe: %q", d)
	}
	var always Window
	if now := time.Now(); !always.Next(now, nil).Equal(now) || !always.Always() {
		t.Error("the zero window must be always open")
	}
	if w, err := Parse("", nil, ""); err != nil || !w.Always() {
		t.Errorf("nothing set: %v %v", w, err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tt := range []struct {
		tz    string
		days  []string
		hours string
		want  string
	}{
		{"Asia/Shangai", nil, "", `timezone: "Asia/Shangai" is not an IANA zone name`},
		{"", []string{"monday"}, "", `days: "monday" is not a day`},
		{"", nil, "9-18", `hours: "9-18"`},
		{"", nil, "09:00", `hours: "09:00": use "09:00-18:00"`},
		{"", nil, "09:00-09:00", "opens and closes at the same time"},
		{"", nil, "25:00-06:00", `"25:00" is not a time of day`},
	} {
		_, err := Parse(tt.tz, tt.days, tt.hours)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q %q %q: %v, want %q", tt.tz, tt.days, tt.hours, err, tt.want)
		}
	}
}
