//go:build unix

package storage

import (
	"errors"
	"syscall"
)

// pidRunning reports whether a process with this id exists: signal 0 is
// delivered to nobody, but says ESRCH when there is no such process (EPERM
// means it exists and belongs to another user).
func pidRunning(pid int) bool {
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
