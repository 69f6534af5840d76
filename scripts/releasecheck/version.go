package main

import (
	"fmt"

	"golang.org/x/mod/semver"
)

// allowsIncompatible reports whether going from release base to version cur
// may break the API: while base is v0, cur must have a higher minor (or
// major) version; from v1 on, a higher major version (which Go spells as a
// new module path ending in /vN).
func allowsIncompatible(base, cur string) bool {
	if semver.Major(base) == "v0" {
		return semver.Compare(semver.MajorMinor(cur), semver.MajorMinor(base)) > 0
	}
	return semver.Compare(semver.Major(cur), semver.Major(base)) > 0
}

// nextIncompatible names the lowest version that allows an incompatible
// change after release base.
func nextIncompatible(base string) string {
	var major, minor int
	fmt.Sscanf(semver.MajorMinor(base), "v%d.%d", &major, &minor)
	if major == 0 {
		return fmt.Sprintf("v0.%d.0", minor+1)
	}
	return fmt.Sprintf("v%d.0.0", major+1)
}

// nextCompatible names the lowest version that may add API after release
// base: the next minor version.
func nextCompatible(base string) string {
	var major, minor int
	fmt.Sscanf(semver.MajorMinor(base), "v%d.%d", &major, &minor)
	return fmt.Sprintf("v%d.%d.0", major, minor+1)
}
