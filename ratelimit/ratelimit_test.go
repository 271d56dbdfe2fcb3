package ratelimit

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

func TestDailyRollingWindow(t *testing.T) {
	t.Parallel()
	d := NewDaily(3)
	t0 := time.Date(2026, 11, 24, 10, 0, 30, 0, time.UTC)
	for i := range 3 {
		if ok, _ := d.Take(t0.Add(time.Duration(i) * time.Minute)); !ok {
			t.Fatalf("take %d refused", i)
		}
	}
	ok, at := d.Take(t0.Add(time.Hour))
	if ok {
		t.Fatal("fourth message within the day allowed")
	}
	// The first message's minute (10:00) leaves the window at 10:01 next day.
	if want := time.Date(2026, 11, 25, 10, 1, 0, 0, time.UTC); !at.Equal(want) {
		t.Fatalf("retry at %v, want %v", at, want)
	}
	if ok, _ := d.Take(at.Add(-time.Second)); ok {
		t.Fatal("allowed before the window moved")
	}
	if ok, _ := d.Take(at); !ok {
		t.Fatal("refused after the oldest minute left the window")
	}
	if d.Used(at) != 3 {
		t.Fatalf("used %d", d.Used(at))
	}
	d.Undo(at)
	if d.Used(at) != 2 {
		t.Fatalf("undo: used %d", d.Used(at))
	}
}

func TestDailySeedSurvivesRestart(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	d := NewDaily(10)
	d.Seed(now.Add(-2*time.Hour), 9) // what the store says was sent today
	if ok, _ := d.Take(now); !ok {
		t.Fatal("tenth refused")
	}
	if ok, _ := d.Take(now); ok {
		t.Fatal("eleventh allowed: the seed was ignored")
	}
	if ok, _ := NewDaily(0).Take(now); !ok {
		t.Fatal("unlimited refused")
	}
}

func TestLimiterRate(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := NewLimiter(10, 1, time.Second)
		start := time.Now()
		for range 21 {
			if err := l.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		// 1 from the burst, 20 more at 10/s: 2 seconds of fake time.
		if got := time.Since(start); got != 2*time.Second {
			t.Fatalf("21 messages at 10/s took %v", got)
		}
	})
}

func TestLimiterThrottleAndRecovery(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := NewLimiter(100, 1, 10*time.Second)
		l.Throttled()
		if r := l.Rate(); r != 50 {
			t.Fatalf("after a throttle rate %v, want 50", r)
		}
		l.Throttled() // same burst of replies: no second cut
		if r := l.Rate(); r != 50 {
			t.Fatalf("a burst of throttle replies cut twice: %v", r)
		}
		start := time.Now()
		if err := l.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(start); waited < 10*time.Second {
			t.Fatalf("no cool-down: waited %v", waited)
		}
		l.Sent()
		if r := l.Rate(); r != 60 {
			t.Fatalf("after a quiet cool-down rate %v, want 60", r)
		}
		l.Sent()
		if r := l.Rate(); r != 60 {
			t.Fatalf("recovered again without a quiet period: %v", r)
		}
		for range 10 {
			time.Sleep(10 * time.Second)
			l.Sent()
		}
		if r := l.Rate(); r != 100 {
			t.Fatalf("rate did not recover to the configured 100: %v", r)
		}
	})
}

func TestLimiterWaitHonoursContext(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := NewLimiter(1, 1, time.Minute)
		l.Throttled()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := l.Wait(ctx); err == nil {
			t.Fatal("Wait ignored the context during a cool-down")
		}
	})
}
