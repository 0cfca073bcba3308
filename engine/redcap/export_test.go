package redcap

import (
	"context"
	"time"
)

// SetWait replaces the pause between retries so tests need not sleep.
func SetWait(c *Client, wait func(ctx context.Context, d time.Duration) error) { c.wait = wait }

// SetNow replaces the clock that Retry-After dates are measured against.
func SetNow(c *Client, now func() time.Time) { c.now = now }
