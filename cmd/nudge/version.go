package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// buildVersion is stamped by the release build:
//
//	go build -ldflags "-X main.buildVersion=v1.4.0" ./cmd/nudge
//
// (see cmd/nudge/deploy/Makefile). Empty in a plain go build.
var buildVersion string

// buildRevision is the commit, stamped by the release build for builds
// where Go cannot read it from the checkout (a git worktree, a container
// build without .git): -X main.buildRevision=$(git rev-parse HEAD).
var buildRevision string

// buildInfo is what nudge version prints about the binary.
type buildInfo struct {
	Version   string // the stamp, else the module version, else "(devel)"
	Module    string // the module version Go recorded ("(devel)" in a checkout)
	Revision  string // vcs.revision
	Time      string // vcs.time
	Modified  string // vcs.modified: "true" when built from a changed checkout
	GoVersion string
	Platform  string
}

// readBuildInfo gathers the build stamp and what Go recorded in the binary.
func readBuildInfo() buildInfo {
	b := buildInfo{GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		b.Module = bi.Main.Version
		b.GoVersion = bi.GoVersion
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Revision = s.Value
			case "vcs.time":
				b.Time = s.Value
			case "vcs.modified":
				b.Modified = s.Value
			}
		}
	}
	if b.Revision == "" {
		b.Revision = buildRevision
	}
	switch {
	case buildVersion != "":
		b.Version = buildVersion
	case b.Module != "":
		b.Version = b.Module
	default:
		b.Version = "(devel)"
	}
	return b
}

// printVersion prints the version line, then one line per known build fact.
func printVersion(w io.Writer) {
	b := readBuildInfo()
	fmt.Fprintln(w, "nudge", b.Version)
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "  %-9s %s\n", k+":", v)
		}
	}
	line("module", b.Module)
	line("revision", b.Revision)
	line("time", b.Time)
	line("modified", b.Modified)
	line("go", b.GoVersion)
	line("platform", b.Platform)
}
