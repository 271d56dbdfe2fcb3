// Package schedule is a campaign's sending window: the days and hours,
// in a time zone, when its messages may go out (campaign.schedule).
//
// A window may cross midnight ("22:00-06:00"): the hours after midnight
// then belong to the day the window opened, so days = ["fri"] with
// "22:00-06:00" is open from Friday 22:00 to Saturday 06:00.
package schedule

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Window is when messages may go out. The zero Window is always open.
type Window struct {
	// Loc is the zone the days and hours are read in, unless a recipient
	// has a zone of their own.
	Loc *time.Location
	// days[d] says whether the window opens on weekday d; all true when
	// no days were given.
	days [7]bool
	// from and to are minutes after midnight; from == to: all day.
	from, to int
	set      bool // anything but always open
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// Parse builds a window from the configuration's values: tz an IANA zone
// name ("" for the machine's), days three-letter names ("mon", …; none:
// every day), hours "HH:MM-HH:MM" ("" for all day). Each error names what
// is wrong in the words of the key it came from.
func Parse(tz string, days []string, hours string) (Window, error) {
	w := Window{Loc: time.Local}
	var errs []error
	if tz != "" {
		loc, err := LoadZone(tz)
		if err != nil {
			errs = append(errs, fmt.Errorf("timezone: %w", err))
		} else {
			w.Loc = loc
		}
	}
	if len(days) == 0 {
		for i := range w.days {
			w.days[i] = true
		}
	}
	for _, d := range days {
		wd, ok := dayNames[strings.ToLower(strings.TrimSpace(d))]
		if !ok {
			errs = append(errs, fmt.Errorf("days: %q is not a day (use mon, tue, wed, thu, fri, sat, sun)", d))
			continue
		}
		w.days[wd] = true
		w.set = true
	}
	if hours != "" {
		from, to, err := parseHours(hours)
		if err != nil {
			errs = append(errs, fmt.Errorf("hours: %w", err))
		}
		w.from, w.to = from, to
		w.set = w.set || from != to
	}
	return w, errors.Join(errs...)
}

// LoadZone loads an IANA zone by name ("Asia/Shanghai"); "Local" and ""
// are refused so that a typo does not silently mean the machine's zone.
func LoadZone(name string) (*time.Location, error) {
	if name == "" || name == "Local" {
		return nil, fmt.Errorf("%q is not an IANA zone name such as \"Asia/Shanghai\"", name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("%q is not an IANA zone name such as \"Asia/Shanghai\" or \"America/New_York\"", name)
	}
	return loc, nil
}

func parseHours(s string) (from, to int, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("%q: use \"09:00-18:00\" (a window may cross midnight: \"22:00-06:00\")", s)
	}
	if from, err = clock(a); err == nil {
		to, err = clock(b)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("%q: %w", s, err)
	}
	if from == to {
		return 0, 0, fmt.Errorf("%q opens and closes at the same time (leave hours out for all day)", s)
	}
	return from, to, nil
}

// clock reads "HH:MM" (24:00 allowed as an end) as minutes after midnight.
func clock(s string) (int, error) {
	s = strings.TrimSpace(s)
	var h, m int
	if n, err := fmt.Sscanf(s, "%d:%d", &h, &m); err != nil || n != 2 || len(s) != 5 || h < 0 || h > 24 || m < 0 || m > 59 || h == 24 && m != 0 {
		return 0, fmt.Errorf("%q is not a time of day such as 09:00", s)
	}
	return h*60 + m, nil
}

// Always reports whether the window is always open.
func (w Window) Always() bool { return !w.set }

// Next is the first moment at or after t when the window is open in loc
// (nil: the window's zone): t itself when it is open now.
func (w Window) Next(t time.Time, loc *time.Location) time.Time {
	if !w.set {
		return t
	}
	if loc == nil {
		loc = w.Loc
	}
	lt := t.In(loc)
	if w.open(lt) {
		return t
	}
	// The window opens at from on one of the next eight days (today's
	// opening may still be ahead).
	y, mo, d := lt.Date()
	for i := range 8 {
		start := time.Date(y, mo, d+i, w.from/60, w.from%60, 0, 0, loc)
		if !start.Before(lt) && w.days[start.Weekday()] && w.open(start) {
			return start
		}
	}
	return t // unreachable: some day is set
}

// open reports whether lt (in the zone the window is read in) is inside it.
func (w Window) open(lt time.Time) bool {
	m := lt.Hour()*60 + lt.Minute()
	day := lt.Weekday()
	switch {
	case w.from == w.to: // all day
		return w.days[day]
	case w.from < w.to:
		return w.days[day] && m >= w.from && m < w.to
	case m >= w.from: // crosses midnight: the evening part
		return w.days[day]
	case m < w.to: // the morning part belongs to the day before
		return w.days[(day+6)%7]
	}
	return false
}

// Describe says when the window next opens after t, for people:
// "opens Mon 09:00 Asia/Shanghai".
func (w Window) Describe(at time.Time, loc *time.Location) string {
	if loc == nil {
		loc = w.Loc
	}
	return "opens " + at.In(loc).Format("Mon 15:04") + " " + loc.String()
}
