//go:build race

package rthub

// raceOn reports that the race detector is on: it slows the hub several
// times over, so timing assertions only log.
const raceOn = true
