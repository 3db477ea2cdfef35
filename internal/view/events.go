package view

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/acmeq/acmeq/messages"
)

type eventKey struct {
	obj     messages.ObjectReference
	typ     messages.EventType
	reason  string
	message string
}

// AggregateEvents merges events with the same involved object, type,
// reason and message into one, as Kubernetes' event correlator does: Count
// is the sum of their counts, FirstTimestamp the earliest and
// LastTimestamp the latest. The result is ordered by FirstTimestamp (ties
// keep their order of arrival).
func AggregateEvents(evs []messages.Event) []messages.Event {
	idx := map[eventKey]int{}
	var out []messages.Event
	for _, e := range evs {
		if e.Count <= 0 {
			e.Count = 1
		}
		if e.LastTimestamp.IsZero() {
			e.LastTimestamp = e.FirstTimestamp
		}
		k := eventKey{e.InvolvedObject, e.Type, e.Reason, e.Message}
		i, ok := idx[k]
		if !ok {
			idx[k] = len(out)
			out = append(out, e)
			continue
		}
		a := &out[i]
		a.Count += e.Count
		if e.FirstTimestamp.Before(a.FirstTimestamp) {
			a.FirstTimestamp = e.FirstTimestamp
		}
		if e.LastTimestamp.After(a.LastTimestamp) {
			a.LastTimestamp = e.LastTimestamp
			a.Reporter = e.Reporter
		}
	}
	slices.SortStableFunc(out, func(a, b messages.Event) int { return a.FirstTimestamp.Compare(b.FirstTimestamp) })
	return out
}

// SortByLastSeen orders events by LastTimestamp, oldest first (ties keep
// their order), as `kubectl events` lists them.
func SortByLastSeen(evs []messages.Event) {
	slices.SortStableFunc(evs, func(a, b messages.Event) int { return a.LastTimestamp.Compare(b.LastTimestamp) })
}

// EventAge is kubectl's age of an event: "19s", or "101s (x3 over 106s)"
// for one seen 3 times, last 101s and first 106s ago.
func EventAge(e messages.Event, now time.Time) string {
	first := Since(e.FirstTimestamp, now)
	if e.Count > 1 {
		last := e.LastTimestamp
		if last.IsZero() {
			last = e.FirstTimestamp
		}
		return fmt.Sprintf("%s (x%d over %s)", Since(last, now), e.Count, first)
	}
	return first
}

// EventSource is the From column: the event's source, "acmeq" by default.
func EventSource(e messages.Event) string {
	if e.Source != "" {
		return e.Source
	}
	return messages.EventSource
}

// EventObject is the OBJECT column of `kubectl events`: "order/NAME".
func EventObject(ref messages.ObjectReference) string {
	kind := strings.ToLower(string(ref.Kind))
	if ref.Name == "" {
		return kind
	}
	return kind + "/" + ref.Name
}

// EventsHeader is the header of the events table; allNamespaces adds a
// leading NAMESPACE column.
func EventsHeader(allNamespaces bool) []string {
	h := []string{"LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"}
	if allNamespaces {
		h = append([]string{"NAMESPACE"}, h...)
	}
	return h
}

// EventRow is one row of the events table.
func EventRow(e messages.Event, allNamespaces bool, now time.Time) []string {
	r := []string{EventAge(e, now), string(e.Type), e.Reason, EventObject(e.InvolvedObject), strings.TrimSpace(e.Message)}
	if allNamespaces {
		r = append([]string{e.InvolvedObject.Namespace}, r...)
	}
	return r
}

// EventsTable renders events as `kubectl events` does:
//
//	LAST SEEN   TYPE     REASON    OBJECT          MESSAGE
//	4s          Normal   Created   order/shop-1-…  Created Challenge resource …
//
// The events are shown in the order given.
func EventsTable(evs []messages.Event, allNamespaces bool, now time.Time) string {
	rows := [][]string{EventsHeader(allNamespaces)}
	for _, e := range evs {
		rows = append(rows, EventRow(e, allNamespaces, now))
	}
	var a Aligner
	return a.Format(rows)
}
