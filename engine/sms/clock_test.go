package sms_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine/sms"
)

func TestFakeClock(t *testing.T) {
	clk := sms.NewFakeClock(epoch)
	ctx := context.Background()
	if err := clk.Sleep(ctx, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	if got, want := clk.Now(), epoch.Add(time.Minute+3*time.Second); !got.Equal(want) {
		t.Errorf("Now = %v, want %v", got, want)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := clk.Sleep(done, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep on a canceled context: %v", err)
	}
	clk.Set(epoch)
	if !clk.Now().Equal(epoch) {
		t.Errorf("Set did not move the clock back")
	}
}

func TestRealClockSleepHonoursContext(t *testing.T) {
	var clk sms.RealClock
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if err := clk.Sleep(done, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep on a canceled context: %v", err)
	}
	if err := clk.Sleep(context.Background(), 0); err != nil {
		t.Errorf("Sleep(0): %v", err)
	}
}
