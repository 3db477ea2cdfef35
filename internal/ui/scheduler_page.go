package ui

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/scheduler"
)

// schedulerPage is the scheduler's state and the work queues' lag.
type schedulerPage struct {
	Configured  bool
	Error       string
	At          string
	Cap         int
	Inflight    int
	Backlog     int64
	Percent     int
	Leases      []leaseRow
	Namespaces  []nsRow
	Locks       []lockRow
	Oldest      *waitRow
	Queues      []queueRow
	QueuesError string
}

type leaseRow struct {
	Namespace, Name, Link, Lock, Expires, Age string
}

type nsRow struct {
	Namespace, Link string
	Queued          int64
	Oldest          *waitRow
}

type lockRow struct {
	Lock, Holder, Link string
	Leased             bool
}

type waitRow struct {
	Namespace, Name, Link, Wait, Since string
}

type queueRow struct {
	Consumer                string
	Pending                 uint64
	AckPending, Redelivered int
	Waiting                 int
	Error                   string
}

// challengeLink splits a scheduler ID (<namespace>/<name>) into a link to
// the challenge.
func challengeLink(id string) (ns, name, link string) {
	it := scheduler.Item{ID: id}
	ns = it.Namespace()
	name = id[min(len(ns)+1, len(id)):]
	if messages.ValidateObjectName("ns", ns) == nil && messages.ValidateObjectName("n", name) == nil {
		link = describeLink(messages.KindChallenge, ns, name)
	}
	return ns, name, link
}

func newWaitRow(w *scheduler.Waiting) *waitRow {
	if w == nil {
		return nil
	}
	ns, name, link := challengeLink(w.ID)
	return &waitRow{Namespace: ns, Name: name, Link: link, Wait: duration.HumanDuration(w.Wait), Since: w.Since.UTC().Format(time.RFC3339)}
}

func (s *Server) handleScheduler(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	p := &schedulerPage{Configured: s.sched != nil}
	for _, q := range s.queues(ctx) {
		row := queueRow{Consumer: q.consumer, Pending: q.pending, AckPending: q.ackPending, Redelivered: q.redelivered, Waiting: q.waiting}
		if q.err != nil {
			row.Error = q.err.Error()
		}
		p.Queues = append(p.Queues, row)
	}
	status := http.StatusOK
	if s.sched != nil {
		snap, err := s.sched.Snapshot(ctx)
		if err != nil {
			p.Error = err.Error()
			status = http.StatusServiceUnavailable
		} else {
			p.At = snap.At.UTC().Format(time.RFC3339)
			p.Cap, p.Inflight, p.Backlog = snap.Cap, len(snap.Inflight), snap.Backlog
			if snap.Cap > 0 {
				p.Percent = min(100, 100*len(snap.Inflight)/snap.Cap)
			}
			for _, l := range snap.Inflight {
				ns, name, link := challengeLink(l.ID)
				row := leaseRow{Namespace: ns, Name: name, Link: link, Lock: l.Lock, Expires: until(l.Expires, snap.At)}
				if !l.Created.IsZero() {
					row.Age = duration.HumanDuration(snap.At.Sub(l.Created))
				}
				p.Leases = append(p.Leases, row)
			}
			for _, nb := range snap.Namespaces {
				p.Namespaces = append(p.Namespaces, nsRow{Namespace: nb.Namespace, Link: "/certificates?" + url.Values{"ns": {nb.Namespace}}.Encode(), Queued: nb.Queued, Oldest: newWaitRow(nb.Oldest)})
			}
			for _, l := range snap.Locks {
				_, _, link := challengeLink(l.Holder)
				p.Locks = append(p.Locks, lockRow{Lock: l.Lock, Holder: l.Holder, Link: link, Leased: l.Leased})
			}
			p.Oldest = newWaitRow(snap.Oldest)
		}
	}
	s.render(w, r, status, "scheduler", p)
}
