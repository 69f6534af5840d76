package hubhttp

import (
	"encoding/json"
	"net/http"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/org/rthub"
)

// Memory is the JSON body of the debug endpoint [MemoryHandler] serves: the
// process's memory measured after forced garbage collections, so that what
// is left is what something still references. The load tool's churn scenario
// compares it before, during and after a run to find leaks.
type Memory struct {
	HeapAlloc   uint64 `json:"heap_alloc"`   // bytes of live heap objects (after the GCs: what is still reachable)
	HeapInuse   uint64 `json:"heap_inuse"`   // bytes in in-use heap spans (live objects plus the spans' free slots)
	HeapObjects uint64 `json:"heap_objects"` // live heap objects
	StackInuse  uint64 `json:"stack_inuse"`  // bytes of goroutine stacks
	Goroutines  int    `json:"goroutines"`   // runtime.NumGoroutine, the request's own goroutine included
	RSS         uint64 `json:"rss"`          // bytes, VmRSS from /proc/self/status after FreeOSMemory; 0 elsewhere
	Connections int    `json:"connections"`  // the hub's open connections (Hub.Stats().Connections)
	// GCTime is how long the forced collections took, in seconds: the
	// pause-free but CPU-costly price of each sample.
	GCTime float64     `json:"gc_seconds"`
	NumGC  uint32      `json:"num_gc"`
	Hub    rthub.Stats `json:"hub"`
}

// MemoryHandler returns the handler of GET /debug/memory: it runs
// runtime.GC twice (the second also frees what the first only marked: the
// sync.Pool victim caches, objects kept alive one cycle by finalizers) and
// debug.FreeOSMemory (a third collection that also returns freed pages to
// the OS, so RSS shows them gone), then answers [Memory] as JSON.
//
// Each request costs full collections and stops the world briefly; requests
// are served one at a time. It is a debugging aid: serve it only on an
// opt-in, loopback address, never beside the public endpoints.
func MemoryHandler(hub *rthub.Hub) http.HandlerFunc {
	var mu sync.Mutex // one measurement at a time: concurrent ones would only repeat the GCs
	return func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		start := time.Now()
		runtime.GC()
		runtime.GC()
		debug.FreeOSMemory()
		gcTime := time.Since(start)
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		m := Memory{
			HeapAlloc:   ms.HeapAlloc,
			HeapInuse:   ms.HeapInuse,
			HeapObjects: ms.HeapObjects,
			StackInuse:  ms.StackInuse,
			Goroutines:  runtime.NumGoroutine(),
			RSS:         RSS(),
			GCTime:      gcTime.Seconds(),
			NumGC:       ms.NumGC,
			Hub:         hub.Stats(),
		}
		mu.Unlock()
		m.Connections = m.Hub.Connections
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(m)
	}
}
