package bench

import (
	"bytes"
	"maps"
	"strings"
	"sync"
)

// requestCounter counts the requests Pebble handles, from its log (the WFE
// logs "POST /authZ/ -> calling handler()" for each), by method and
// endpoint.
type requestCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func newRequestCounter() *requestCounter { return &requestCounter{n: map[string]int{}} }

// Write implements io.Writer for a log.Logger: one line per call.
func (c *requestCounter) Write(p []byte) (int, error) {
	const suffix = " -> calling handler()"
	for line := range bytes.Lines(p) {
		s := strings.TrimSpace(string(line))
		req, ok := strings.CutSuffix(s, suffix)
		if !ok {
			continue
		}
		// Drop log.Logger's prefix and date: keep "METHOD /path/".
		f := strings.Fields(req)
		if len(f) < 2 {
			continue
		}
		key := f[len(f)-2] + " " + f[len(f)-1]
		c.mu.Lock()
		c.n[key]++
		c.mu.Unlock()
	}
	return len(p), nil
}

// snapshot returns the counts so far.
func (c *requestCounter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}

// total sums counts.
func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
