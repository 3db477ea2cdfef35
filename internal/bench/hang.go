package bench

import (
	"runtime"
	"strings"
)

// pebbleDBPackage marks the frames of Pebble's in-memory store, where its
// lock-order deadlock happens (db.(*MemoryStore).FindValidAuthorization
// holds the store's read lock while it waits for an authorization's lock).
const pebbleDBPackage = "letsencrypt/pebble/v2/db."

// lockWaiters returns, for every goroutine blocked on a sync lock inside
// Pebble's store, its id and the store function it waits in. Pebble runs
// in this process, so its goroutines are ours to look at.
func lockWaiters() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	return parseLockWaiters(string(buf))
}

// parseLockWaiters parses a goroutine dump (runtime.Stack, all=true).
func parseLockWaiters(dump string) map[string]string {
	out := map[string]string{}
	for g := range strings.SplitSeq(dump, "\n\n") {
		header, frames, ok := strings.Cut(g, "\n")
		if !ok {
			continue
		}
		// "goroutine 123 [sync.RWMutex.RLock, 2 minutes]:"
		rest, ok := strings.CutPrefix(header, "goroutine ")
		if !ok {
			continue
		}
		id, state, ok := strings.Cut(rest, " [")
		if !ok || !strings.HasPrefix(state, "sync.") {
			continue
		}
		for line := range strings.Lines(frames) {
			// "github.com/letsencrypt/pebble/v2/db.(*MemoryStore).F(0xc0001, {0x2, 0x3})"
			if i := strings.Index(line, pebbleDBPackage); i >= 0 && !strings.HasPrefix(line, "\t") {
				fn := line[i+len("letsencrypt/pebble/v2/"):]
				if j := strings.LastIndexByte(fn, '('); j > 0 {
					fn = fn[:j]
				}
				out[id] = fn
				break
			}
		}
	}
	return out
}

// stuck returns a store function some goroutine has been blocked in since
// the previous dump (prev), or "". Goroutines in ignore (stuck before the
// run: an earlier run's hung Pebble) do not count.
func stuck(ignore, prev, cur map[string]string) string {
	for id, fn := range cur {
		if _, old := ignore[id]; !old && prev[id] == fn {
			return fn
		}
	}
	return ""
}
