package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/acmeq/acmeq/producer"
)

// progress shows how a bulk command advances: a line redrawn in place on a
// terminal, a plain line every few seconds otherwise (logs, CI).
type progress struct {
	w     io.Writer
	tty   bool
	start time.Time
	last  time.Time
}

// newProgress writes to w, redrawing in place when w is a terminal.
func newProgress(w io.Writer) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		st, err := f.Stat()
		tty = err == nil && st.Mode()&os.ModeCharDevice != 0
	}
	return &progress{w: w, tty: tty, start: time.Now()}
}

// line shows s, throttled: 10 times a second on a terminal, every 5 s
// otherwise; force shows it regardless.
func (p *progress) line(s string, force bool) {
	now := time.Now()
	every := 5 * time.Second
	if p.tty {
		every = 100 * time.Millisecond
	}
	if !force && now.Sub(p.last) < every {
		return
	}
	p.last = now
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", s)
	} else {
		fmt.Fprintln(p.w, s)
	}
}

func (p *progress) finish() {
	if p.tty {
		fmt.Fprintln(p.w)
	}
}

func (p *progress) summary(counts map[producer.Result]int, errs int) string {
	n := counts[producer.Created] + counts[producer.Configured] + counts[producer.Unchanged]
	rate := float64(n) / time.Since(p.start).Seconds()
	return fmt.Sprintf("applied %d (%d created, %d configured, %d unchanged), %d errors, %.0f/s",
		n, counts[producer.Created], counts[producer.Configured], counts[producer.Unchanged], errs, rate)
}

func (p *progress) update(counts map[producer.Result]int, errs int) {
	p.line(p.summary(counts, errs), false)
}

func (p *progress) done(counts map[producer.Result]int, errs int) {
	p.line(p.summary(counts, errs), true)
	p.finish()
}
