package ui

import (
	"context"
	"errors"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/scheduler"
	"github.com/acmeq/acmeq/worker"
)

// The order → challenge tree of a certificate: its CertificateRequests
// (the one in progress and the current one), each request's Orders, and
// each order's Challenges, each with its state and reason. Finished
// challenges are deleted once their order is final, so a challenge the
// order names that no longer exists is shown as removed.

// treeRequest is one CertificateRequest of a certificate.
type treeRequest struct {
	Role                   string // "in progress", "current"
	Name, Link             string
	Ready, Reason, Message string
	Orders                 []treeOrder
}

// treeOrder is one Order.
type treeOrder struct {
	Name, Link, State, Reason string
	Challenges                []treeChallenge
}

// treeChallenge is one authorization's challenge.
type treeChallenge struct {
	Name, Link, DNSName, Type string
	State, Reason             string
	Processing, Presented     bool
	Removed                   bool
	// Scheduler is "queued", "inflight" or "" (unknown to the scheduler).
	Scheduler string
}

// certificateTree builds the tree of cert: the requests of its next and
// current revisions, when they exist.
func (s *Server) certificateTree(ctx context.Context, cert *messages.Certificate) ([]treeRequest, error) {
	ns, rev := cert.Metadata.Namespace, cert.Status.Revision
	var reqs []*messages.CertificateRequest
	var roles []string
	for _, c := range []struct {
		rev  int
		role string
	}{{rev + 1, "next revision"}, {rev, "current revision"}} {
		if c.rev < 1 {
			continue
		}
		cr := &messages.CertificateRequest{}
		err := s.store.Get(ctx, ns, worker.RequestName(cert.Metadata.Name, c.rev), cr)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		reqs = append(reqs, cr)
		roles = append(roles, c.role)
	}
	return s.requestTrees(ctx, ns, reqs, roles)
}

// requestTrees builds the tree of each request (all in namespace ns).
func (s *Server) requestTrees(ctx context.Context, ns string, reqs []*messages.CertificateRequest, roles []string) ([]treeRequest, error) {
	if len(reqs) == 0 {
		return nil, nil
	}
	names := make([]string, len(reqs))
	for i, cr := range reqs {
		names[i] = cr.Metadata.Name
	}
	orders, err := s.ordersOf(ctx, ns, names)
	out := make([]treeRequest, len(reqs))
	for i, cr := range reqs {
		t := treeRequest{Role: roles[i], Name: cr.Metadata.Name, Link: describeLink(messages.KindCertificateRequest, ns, cr.Metadata.Name), Ready: string(messages.ConditionUnknown)}
		if c := messages.GetCondition(cr.Status.Conditions, messages.ConditionReady); c != nil {
			t.Ready, t.Reason, t.Message = string(c.Status), c.Reason, c.Message
		}
		for _, on := range orders[cr.Metadata.Name] {
			o := &messages.Order{}
			if gerr := s.store.Get(ctx, ns, on, o); gerr != nil {
				if !errors.Is(gerr, store.ErrNotFound) {
					err = gerr
				}
				continue
			}
			if o.Metadata.OwnerReference == nil || o.Metadata.OwnerReference.Name != cr.Metadata.Name {
				continue
			}
			ot, oerr := s.orderTree(ctx, o)
			if oerr != nil {
				err = oerr
			}
			t.Orders = append(t.Orders, ot)
		}
		out[i] = t
	}
	return out, err
}

// ordersOf finds the Orders of the named requests in ns. An order's name
// is messages.DerivedName(request, "-<hash of its spec>"), so the keys of
// the namespace are listed (names only) and each is matched by recomputing
// its name from a request's and its suffix: long names, cut and hashed,
// match too.
func (s *Server) ordersOf(ctx context.Context, ns string, requests []string) (map[string][]string, error) {
	out := map[string][]string{}
	kv := s.store.KV(messages.KindOrder)
	if kv == nil {
		return out, errors.New("ui: the store has no Order bucket")
	}
	lister, err := kv.ListKeysFiltered(ctx, ns+".*")
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return out, nil
	}
	if err != nil {
		return out, err
	}
	defer func() { _ = lister.Stop() }()
	for key := range lister.Keys() {
		_, name, ok := messages.SplitKey(key)
		if !ok {
			continue
		}
		i := strings.LastIndexByte(name, '-')
		if i < 0 {
			continue
		}
		suffix := name[i:]
		for _, cr := range requests {
			if messages.DerivedName(cr, suffix) == name {
				out[cr] = append(out[cr], name)
			}
		}
	}
	return out, nil
}

// orderTree builds the challenges of an order, one per authorization.
func (s *Server) orderTree(ctx context.Context, o *messages.Order) (treeOrder, error) {
	ns := o.Metadata.Namespace
	t := treeOrder{Name: o.Metadata.Name, Link: describeLink(messages.KindOrder, ns, o.Metadata.Name), State: string(o.Status.State), Reason: o.Status.Reason}
	if t.State == "" {
		t.State = "(not yet sent to the CA)"
	}
	var ids []string
	var live []int
	var err error
	for i, a := range o.Status.Authorizations {
		name := worker.ChallengeName(o.Metadata.Name, i)
		c := treeChallenge{Name: name, Link: describeLink(messages.KindChallenge, ns, name), DNSName: a.Identifier}
		ch := &messages.Challenge{}
		gerr := s.store.Get(ctx, ns, name, ch)
		switch {
		case errors.Is(gerr, store.ErrNotFound):
			c.Removed = true
			c.State = string(a.InitialState)
		case gerr != nil:
			err = gerr
			c.State = "(unreadable)"
		default:
			c.DNSName, c.Type = ch.Spec.DNSName, ch.Spec.Type
			c.State, c.Reason = string(ch.Status.State), ch.Status.Reason
			c.Processing, c.Presented = ch.Status.Processing, ch.Status.Presented
			ids = append(ids, scheduler.ChallengeID(ns, name))
			live = append(live, len(t.Challenges))
		}
		t.Challenges = append(t.Challenges, c)
	}
	if s.sched != nil && len(ids) > 0 {
		states, lerr := s.sched.LookupMany(ctx, ids)
		if lerr == nil {
			for j, i := range live {
				t.Challenges[i].Scheduler = string(states[j])
			}
		}
	}
	return t, err
}
