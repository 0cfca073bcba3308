package storage

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Lease owners. A lease is held by an owner string that names the process
// holding it:
//
//	host:pid:proc:random
//
// host and pid are the holder's host name and process id; proc is
// "<start>.<scope>", where start is when the process started (clock ticks
// since boot, from /proc/PID/stat) and scope is a digest of the machine's
// boot id and the process's PID namespace; random tells apart owners in one
// process and processes that share all the rest. Where the start or the
// scope cannot be read (not Linux) they are "0" and "-".
//
// TryLock takes over a lease before it expires only when its holder is
// provably gone: the owner names this host and this scope (so its PID means
// the same process table as ours), and that PID is no longer running, is a
// zombie, or belongs to a process that started at another time (the PID was
// reused). An owner in any other form (an older nudge, a test's "a") is
// never taken over early: it expires.

// NewOwner returns a fresh lease owner naming the calling process. Every
// call returns another owner.
func NewOwner() string {
	self := thisProcess()
	host := strings.ReplaceAll(self.host, ":", "_")
	return host + ":" + strconv.Itoa(self.pid) + ":" + self.start + "." + self.scope + ":" + rand.Text()[:16]
}

// process identifies a process for lease takeover.
type process struct {
	host  string
	pid   int
	start string // clock ticks since boot; "0" when unknown
	scope string // boot id and PID namespace digest; "-" when unknown
}

var (
	selfOnce sync.Once
	self     process
)

// thisProcess identifies the calling process (read once).
func thisProcess() process {
	selfOnce.Do(func() {
		host, _ := os.Hostname()
		pid := os.Getpid()
		start, ok := procStart(pid)
		if !ok {
			start = "0"
		}
		self = process{host: strings.ReplaceAll(host, ":", "_"), pid: pid, start: start, scope: procScope()}
	})
	return self
}

// parseOwner reads an owner written by NewOwner.
func parseOwner(owner string) (process, bool) {
	f := strings.Split(owner, ":")
	if len(f) != 4 || f[0] == "" {
		return process{}, false
	}
	pid, err := strconv.Atoi(f[1])
	if err != nil || pid <= 0 {
		return process{}, false
	}
	start, scope, ok := strings.Cut(f[2], ".")
	if !ok || start == "" || scope == "" {
		return process{}, false
	}
	if _, err := strconv.ParseUint(start, 10, 64); err != nil {
		return process{}, false
	}
	return process{host: f[0], pid: pid, start: start, scope: scope}, true
}

// ownerGone reports whether the process that owner names is provably no
// longer running. Anything it cannot prove (another host, another PID
// namespace, an owner it cannot read, a process it may not signal) counts
// as running.
func ownerGone(owner string) bool {
	p, ok := parseOwner(owner)
	me := thisProcess()
	if !ok || p.host != me.host || p.scope == "-" || p.scope != me.scope {
		return false
	}
	if p.pid == me.pid {
		return p.start != "0" && p.start != me.start
	}
	if !pidRunning(p.pid) {
		return true
	}
	if p.start == "0" {
		return false
	}
	start, ok := procStart(p.pid)
	if !ok {
		// The process ended between the two looks, or /proc is not
		// readable: only a missing entry proves it gone.
		_, err := os.Stat("/proc/" + strconv.Itoa(p.pid))
		return os.IsNotExist(err)
	}
	return start != p.start
}

// procStart reads when process pid started (field 22 of /proc/PID/stat, in
// clock ticks since boot); a zombie counts as not running (false).
func procStart(pid int) (string, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", false
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return "", false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (the state), so field 22 is f[19].
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return "", false
	}
	return f[19], true
}

// procScope is a digest of this machine's boot id and this process's PID
// namespace: two processes with the same scope see the same process table.
// "-" when either cannot be read.
func procScope() string {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "-"
	}
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return "-"
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(string(boot)) + "|" + ns))
	return hex.EncodeToString(sum[:6])
}
