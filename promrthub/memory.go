package promrthub

import (
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// detectMemoryLimit returns the memory this process may use, in bytes: the
// cgroup limit (v2, then v1), else GOMEMLIMIT; 0 when there is none.
func detectMemoryLimit() int64 {
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		if b, err := os.ReadFile(f); err == nil {
			if n := parseLimit(string(b)); n > 0 {
				return n
			}
		}
	}
	if n := debug.SetMemoryLimit(-1); n > 0 && n < math.MaxInt64 {
		return n
	}
	return 0
}

// parseLimit reads a cgroup memory limit file: a number of bytes, or "max".
// cgroup v1 writes a huge page-aligned number for "no limit"; anything from
// 2^60 up counts as none.
func parseLimit(s string) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 || n >= 1<<60 {
		return 0
	}
	return n
}
