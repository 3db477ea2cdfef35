package ui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/view"
	"github.com/acmeq/acmeq/messages"
)

// keepAlive is how often an idle live stream sends a comment, so proxies
// keep it open and a dead client is noticed.
const keepAlive = 15 * time.Second

// eventRow is one event as the pages and the live stream show it.
type eventRow struct {
	Time      string `json:"time"`
	Age       string `json:"age"`
	Type      string `json:"type"`
	Reason    string `json:"reason"`
	Object    string `json:"object"`
	Namespace string `json:"namespace"`
	Link      string `json:"link"`
	Message   string `json:"message"`
	From      string `json:"from"`
}

func newEventRow(e messages.Event, now time.Time) eventRow {
	o := e.InvolvedObject
	r := eventRow{
		Time: e.LastTimestamp.UTC().Format(time.RFC3339), Age: view.EventAge(e, now), Type: string(e.Type), Reason: e.Reason,
		Object: view.EventObject(o), Namespace: o.Namespace, Message: strings.TrimSpace(e.Message), From: view.EventSource(e),
	}
	if e.LastTimestamp.IsZero() {
		r.Time = e.FirstTimestamp.UTC().Format(time.RFC3339)
	}
	if _, err := messages.ParseKind(string(o.Kind)); err == nil && messages.ValidateObjectName("n", o.Name) == nil && messages.ValidateObjectName("ns", o.Namespace) == nil {
		r.Link = describeLink(o.Kind, o.Namespace, o.Name)
	}
	return r
}

// readEvents reads the events recorded about one resource (bus.ReadEvents).
func (s *Server) readEvents(ctx context.Context, filter string) ([]messages.Event, error) {
	return bus.ReadEvents(ctx, s.js, bus.EventsOptions{Filter: filter})
}

// recentEvents returns up to n of the latest events that match filter,
// oldest first. It reads a window at the end of the stream (n events, or
// 20n when filtered), never the whole stream.
func (s *Server) recentEvents(ctx context.Context, filter string, n int, filtered bool) ([]messages.Event, error) {
	if n <= 0 {
		return nil, nil
	}
	str, err := s.js.Stream(ctx, messages.EventStream)
	if err != nil {
		return nil, fmt.Errorf("ui: events: %w", err)
	}
	info, err := str.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("ui: events: %w", err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		return nil, nil
	}
	window := uint64(n)
	if filtered {
		window *= 20
	}
	start := info.State.FirstSeq
	if last >= window && last-window+1 > start {
		start = last - window + 1
	}
	cons, done, err := bus.OrderedEventConsumer(ctx, s.js, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: start,
	})
	if err != nil {
		return nil, fmt.Errorf("ui: events: %w", err)
	}
	defer done()
	var out []messages.Event
	for {
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return out, fmt.Errorf("ui: events: %w", err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			var ev messages.Event
			if json.Unmarshal(msg.Data(), &ev) == nil {
				out = append(out, ev)
				if len(out) > n {
					out = out[1:]
				}
			}
			if md, err := msg.Metadata(); err == nil && (md.NumPending == 0 || md.Sequence.Stream >= last) {
				return out, nil
			}
		}
		if got == 0 {
			return out, batch.Error()
		}
	}
}

// eventsFilter reads the events page's ns and kind parameters.
func eventsFilter(r *http.Request) (kind messages.Kind, ns string, pe *paramError) {
	v := r.URL.Query()
	if ns = v.Get("ns"); ns != "" {
		if pe := validName("ns", ns); pe != nil {
			return "", "", pe
		}
	}
	if k := v.Get("kind"); k != "" {
		var err error
		if kind, err = messages.ParseKind(k); err != nil || kind == messages.KindSecret {
			return "", "", &paramError{"kind", fmt.Sprintf("unknown kind %q (want issuer, certificate, certificaterequest, order or challenge)", k)}
		}
	}
	return kind, ns, nil
}

type eventsPage struct {
	NS, Kind string
	Kinds    []string
	Rows     []eventRow
	LiveURL  string
	Error    string
}

func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	kind, ns, pe := eventsFilter(r)
	if pe != nil {
		s.badParam(w, r, pe.param, "%s", pe.msg)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	p := &eventsPage{NS: ns, Kind: kind.Token(), LiveURL: "/live/events?" + r.URL.Query().Encode()}
	for _, k := range messages.ReconciledKinds {
		p.Kinds = append(p.Kinds, k.Token())
	}
	evs, err := s.recentEvents(ctx, messages.EventFilter(kind, ns, ""), s.cfg.RecentEvents, kind != "" || ns != "")
	if err != nil {
		p.Error = err.Error()
	}
	now := s.cfg.Now()
	// Newest first, as the live rows are added at the top.
	for i := len(evs) - 1; i >= 0; i-- {
		p.Rows = append(p.Rows, newEventRow(evs[i], now))
	}
	s.render(w, r, http.StatusOK, "events", p)
}

// stream starts a Server-Sent Events response; it answers 503 (the
// browser retries) when MaxStreams are open already. release must be
// called when the stream ends.
func (s *Server) stream(w http.ResponseWriter, r *http.Request) (send func(event, data string) error, release func(), ok bool) {
	select {
	case s.streams <- struct{}{}:
	default:
		w.Header().Set("Retry-After", "5")
		http.Error(w, "too many live streams", http.StatusServiceUnavailable)
		return nil, nil, false
	}
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send = func(event, data string) error {
		var b strings.Builder
		if event == "" && data == "" {
			b.WriteString(": keep-alive\n") // a comment: no message
		}
		if event != "" {
			b.WriteString("event: " + event + "\n")
		}
		if event != "" || data != "" {
			for _, line := range strings.Split(data, "\n") {
				b.WriteString("data: " + line + "\n")
			}
		}
		b.WriteString("\n")
		if _, err := w.Write([]byte(b.String())); err != nil {
			return err
		}
		return rc.Flush()
	}
	if _, err := w.Write([]byte("retry: 2000\n\n")); err == nil {
		_ = rc.Flush()
	}
	return send, func() { <-s.streams }, true
}

// handleLiveCertificates tells the certificate list that the index
// changed ("changed", with the index version), at most once per
// LiveInterval; the page then fetches its rows again.
func (s *Server) handleLiveCertificates(w http.ResponseWriter, r *http.Request) {
	send, release, ok := s.stream(w, r)
	if !ok {
		return
	}
	defer release()
	ctx := r.Context()
	ping := time.NewTicker(keepAlive)
	defer ping.Stop()
	var sent uint64
	first := true
	for {
		_, _, version, changed := s.index.status()
		if first || version != sent {
			if send("changed", strconv.FormatUint(version, 10)) != nil {
				return
			}
			sent, first = version, false
			// Coalesce a burst of changes into one notification.
			select {
			case <-ctx.Done():
				return
			case <-time.After(s.cfg.LiveInterval):
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-ping.C:
			if send("", "") != nil {
				return
			}
		}
	}
}

// handleLiveEvents streams the events recorded from now on that match the
// page's filter, one "event" message (JSON of an eventRow) each.
func (s *Server) handleLiveEvents(w http.ResponseWriter, r *http.Request) {
	kind, ns, pe := eventsFilter(r)
	if pe != nil {
		s.badParam(w, r, pe.param, "%s", pe.msg)
		return
	}
	send, release, ok := s.stream(w, r)
	if !ok {
		return
	}
	defer release()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	evs := make(chan messages.Event, 256)
	errc := make(chan error, 1)
	go func() {
		errc <- bus.FollowEvents(ctx, s.js, bus.EventsOptions{Filter: messages.EventFilter(kind, ns, ""), Since: s.cfg.Now()}, true, func(e messages.Event) {
			select {
			case evs <- e:
			default: // a client that cannot keep up loses events, not the server
			}
		})
	}()
	ping := time.NewTicker(keepAlive)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-errc:
			if err != nil && !errors.Is(err, context.Canceled) {
				_ = send("error", err.Error())
			}
			return
		case e := <-evs:
			b, _ := json.Marshal(newEventRow(e, s.cfg.Now()))
			if send("event", string(b)) != nil {
				return
			}
		case <-ping.C:
			if send("", "") != nil {
				return
			}
		}
	}
}
