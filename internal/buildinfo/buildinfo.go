// Package buildinfo says which build of vmrun is running (--version).
package buildinfo

import "runtime/debug"

// Version is the commit vmrun was built from ("-dirty" when the checkout
// had changes), with the Go version. commit is what `make build` stamps
// into the binary (-ldflags -X main.commit=...); when it is empty, the VCS
// stamp the Go toolchain records is used, when it records one.
func Version(commit string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return commit
	}
	return describe(commit, bi.Settings) + " (" + bi.GoVersion + ")"
}

// describe is the commit part of Version.
func describe(commit string, settings []debug.BuildSetting) string {
	rev, dirty := commit, false
	for _, s := range settings {
		switch {
		case commit == "" && s.Key == "vcs.revision" && len(s.Value) >= 12:
			rev = s.Value[:12]
		case commit == "" && s.Key == "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		rev = "unknown commit"
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}
