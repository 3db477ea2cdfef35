package scheduler

// Budgets keep the fleet within the CA's rate limits. This file is the
// rule book; the scripts are scripts/budget_*.lua, each run after
// scripts/budget_lib.lua.
//
// # What a budget is
//
// A budget mirrors one of the CA's leaky buckets (Let's Encrypt's are
// GCRA buckets in Boulder; these are the same arithmetic): Count units at
// once, one more every Period/Count. It is identified by its Kind and its
// key: the ACME account for new orders, the registered domain (public
// suffix + 1 label) for certificates, the exact set of names for
// duplicates, the account and hostname for failed validations, the CA for
// new accounts (the fleet is taken to leave through one IP address).
// Certificates per registered domain and duplicates are counted per CA,
// across its accounts, as Let's Encrypt counts them.
//
// # Taking
//
// A new order asks for all its budgets in one script (Take): one new
// order, one certificate per registered domain, one duplicate of its set
// of names, and a check that each hostname's failed-validation budget has
// a unit left. Either it gets them all, or it takes nothing and waits.
// Units are taken when the order is created at the CA, although Let's
// Encrypt counts certificates at issuance: a hundred orders for one domain
// in flight must not all pass a check that only one more may pass. An
// order that never issues gives its units back (Refund). Time is Redis'
// TIME, never a worker's clock.
//
// Renewals that carry ARI's "replaces" are exempt from every one of these
// limits at Let's Encrypt, so they take nothing and never wait.
//
// # Waiting, fairly
//
// An order that cannot take its budgets waits in the queue of the budget
// that holds it back longest (its binding budget), in its namespace's
// queue of that budget, by score (its creation time: oldest first). A
// budget that has a queue is taken only through it: a newcomer queues
// behind. As the budget refills, Serve hands its units out: the namespace
// that was served least recently offers its oldest order, and if that
// order's other budgets let it through too, all are taken at once and the
// namespace goes to the back of the ring. So while two namespaces wait on
// an account's new-order budget each gets every other unit, whatever the
// length of their queues: one tenant's 10,000 new certificates take half
// the refill while another tenant's one waits, not all of it. An order
// whose other budget is spent or queued moves into that budget's queue,
// keeping its score, and its namespace keeps its turn.
//
// Serve runs on every worker's tick and whenever a Take finds a queue
// that could be served; it returns the orders it granted, which the
// caller wakes up; their next Take claims the grant. A waiting order also
// checks back by itself at Wait.RetryAt, its estimated turn (at most
// BudgetConfig.MaxWait away), in case its wake-up is lost.
//
// # 429s
//
// When the CA answers rateLimited anyway (its limits are lower than
// configured, or something else uses the account), Pause stops the
// budget for the whole fleet until the CA's Retry-After and empties it, so
// the fleet resumes at the refill rate rather than with a burst. If the
// problem document names the CA's limit (Boulder's wording: "too many new
// orders (300) from this account in the last 3h0m0s"), the budget paces
// by that limit, where stricter, for 24 of its periods and at least an
// hour, or until the Issuer's limit is changed. A preset of
// "none" budgets nothing but still pauses on a 429 and learns the limit.
// Every 429 reported is counted, per budget and fleet-wide.

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/net/publicsuffix"

	"github.com/acmeq/acmeq/messages"
)

// Kind is the CA rate limit a budget mirrors.
type Kind string

// Kinds of budget, named as spec.acme.rateLimits names them.
const (
	// KindNewOrders: new orders per ACME account.
	KindNewOrders Kind = "newOrdersPerAccount"
	// KindCertificatesPerDomain: certificates per registered domain, per CA.
	KindCertificatesPerDomain Kind = "certificatesPerRegisteredDomain"
	// KindDuplicates: certificates per exact set of names, per CA.
	KindDuplicates Kind = "duplicateCertificates"
	// KindFailedValidations: failed validations per account and hostname.
	KindFailedValidations Kind = "failedValidations"
	// KindNewAccounts: new accounts per IP address (the fleet's), per CA.
	KindNewAccounts Kind = "newAccountsPerIPAddress"
)

// Kinds lists every Kind.
var Kinds = []Kind{KindNewOrders, KindCertificatesPerDomain, KindDuplicates, KindFailedValidations, KindNewAccounts}

// String is the limit's name as users read it in reasons and events.
func (k Kind) String() string {
	switch k {
	case KindNewOrders:
		return "new orders per account"
	case KindCertificatesPerDomain:
		return "certificates per registered domain"
	case KindDuplicates:
		return "duplicate certificates per exact set of names"
	case KindFailedValidations:
		return "failed validations per account and hostname"
	case KindNewAccounts:
		return "new accounts per IP address"
	}
	return string(k)
}

// perAccount reports whether the CA counts the limit per account (else
// per CA).
func (k Kind) perAccount() bool { return k == KindNewOrders || k == KindFailedValidations }

// Limit is a leaky bucket: Count units, refilling one every
// Period/Count. Count 0 budgets nothing (only pauses and limits learned
// from 429s apply).
type Limit = messages.RateLimitValue

// Limits are an Issuer's resolved limits (messages.ResolveRateLimits).
type Limits = messages.ResolvedRateLimits

// limitOf returns the configured limit of kind k.
func limitOf(l Limits, k Kind) Limit {
	switch k {
	case KindNewOrders:
		return l.NewOrdersPerAccount
	case KindCertificatesPerDomain:
		return l.CertificatesPerRegisteredDomain
	case KindDuplicates:
		return l.DuplicateCertificates
	case KindFailedValidations:
		return l.FailedValidations
	case KindNewAccounts:
		return l.NewAccountsPerIPAddress
	}
	return Limit{}
}

// BudgetRef names one budget and carries its configured limit.
type BudgetRef struct {
	Kind Kind
	// CA is the CA's scope (CAScope of its directory URL).
	CA string
	// Account is the ACME account URL; set for per-account kinds only.
	Account string
	// Key is the registered domain (certificates), the hash of the set of
	// names (duplicates), the hostname (failed validations); empty for new
	// orders and new accounts.
	Key string
	// Label is what users read: the registered domain, the names, the
	// hostname, the account URL. Defaults to Key.
	Label string
	// Limit is the configured limit (or, in a Wait or a BudgetStatus, the
	// effective one: stricter where a 429 taught the CA's).
	Limit Limit
}

// ID identifies the budget in Redis: kind|scope|key.
func (r BudgetRef) ID() string {
	scope := r.CA
	if r.Kind.perAccount() {
		scope = r.Account
	}
	return string(r.Kind) + "|" + scope + "|" + r.Key
}

func (r BudgetRef) label() string {
	if r.Label != "" {
		return r.Label
	}
	return r.Key
}

// String renders "certificates per registered domain example.com, 50 per 168h".
func (r BudgetRef) String() string {
	s := r.Kind.String()
	if l := r.label(); l != "" {
		s += " " + l
	}
	return s + ", " + r.Limit.String()
}

// Need is one budget a request takes Cost units of; Cost 0 only checks
// that a unit is left (failed validations are counted when they happen).
type Need struct {
	Ref  BudgetRef
	Cost int
}

// Request asks for budgets on behalf of one order (or account).
type Request struct {
	// ID identifies the waiter: <namespace>/<name>, as the challenge
	// scheduler's items.
	ID string
	// Score orders requests within a namespace, oldest first: the
	// resource's creation time in milliseconds.
	Score int64
	// Exempt requests take nothing and never wait: ACME renewals that
	// carry ARI's "replaces", which Let's Encrypt exempts from its limits.
	Exempt bool
	// Needs are the budgets, all taken or none.
	Needs []Need
}

// Namespace of the request.
func (r Request) Namespace() string { ns, _, _ := strings.Cut(r.ID, "/"); return ns }

// NewOrderRequest is what a new order for dnsNames by account at the CA
// of directoryURL needs: a new order, a certificate per registered domain
// and a duplicate of its set of names (each taken), and a unit left in
// each hostname's failed-validation budget (checked). replaces marks an
// ARI renewal: exempt.
func NewOrderRequest(id string, score int64, directoryURL, account string, dnsNames []string, replaces bool, l Limits) Request {
	ca := CAScope(directoryURL)
	req := Request{ID: id, Score: score, Exempt: replaces}
	need := func(k Kind, key, label string, cost int) {
		ref := BudgetRef{Kind: k, CA: ca, Key: key, Label: label, Limit: limitOf(l, k)}
		if k.perAccount() {
			ref.Account = account
		}
		req.Needs = append(req.Needs, Need{Ref: ref, Cost: cost})
	}
	need(KindNewOrders, "", account, 1)
	names := normalizeNames(dnsNames)
	var domains []string
	for _, n := range names {
		if d := RegisteredDomain(n); !slices.Contains(domains, d) {
			domains = append(domains, d)
		}
	}
	for _, d := range domains {
		need(KindCertificatesPerDomain, d, d, 1)
	}
	need(KindDuplicates, namesKey(names), namesLabel(names), 1)
	var hosts []string
	for _, n := range names {
		if h := strings.TrimPrefix(n, "*."); !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	for _, h := range hosts {
		need(KindFailedValidations, h, h, 0)
	}
	return req
}

// NewAccountRequest is what registering an account at the CA of
// directoryURL needs: one new account.
func NewAccountRequest(id string, score int64, directoryURL string, l Limits) Request {
	return Request{ID: id, Score: score, Needs: []Need{{
		Ref:  BudgetRef{Kind: KindNewAccounts, CA: CAScope(directoryURL), Limit: l.NewAccountsPerIPAddress},
		Cost: 1,
	}}}
}

// FailedValidation is the budget a failed validation of hostname by
// account is counted in (Spend).
func FailedValidation(directoryURL, account, hostname string, l Limits) Need {
	h := strings.TrimPrefix(strings.TrimSuffix(strings.ToLower(hostname), "."), "*.")
	return Need{Ref: BudgetRef{Kind: KindFailedValidations, CA: CAScope(directoryURL), Account: account, Key: h, Label: h, Limit: l.FailedValidations}, Cost: 1}
}

// CAScope is the scope of a CA's per-CA budgets: the lower-cased host[:port]
// of its directory URL (the URL itself if it has none).
func CAScope(directoryURL string) string {
	if u, err := url.Parse(directoryURL); err == nil && u.Host != "" {
		return strings.ToLower(u.Host)
	}
	return directoryURL
}

// RegisteredDomain is the registered domain of a DNS name by the public
// suffix list (example.co.uk for www.example.co.uk; a wildcard counts for
// its base name), as Let's Encrypt counts certificates per domain. A name
// that is itself a public suffix (or has one label) is its own.
func RegisteredDomain(name string) string {
	n := strings.TrimPrefix(strings.TrimSuffix(strings.ToLower(name), "."), "*.")
	if d, err := publicsuffix.EffectiveTLDPlusOne(n); err == nil {
		return d
	}
	return n
}

// normalizeNames lower-cases, trims trailing dots, sorts and de-duplicates.
func normalizeNames(names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		n = strings.TrimSuffix(strings.ToLower(n), ".")
		if n != "" {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// namesKey identifies an exact set of (normalized) names.
func namesKey(names []string) string {
	sum := sha256.Sum256([]byte(strings.Join(names, ",")))
	return hex.EncodeToString(sum[:16])
}

// maxNamesLabel bounds the label of a set of names.
const maxNamesLabel = 120

func namesLabel(names []string) string {
	s := strings.Join(names, ",")
	if len(s) <= maxNamesLabel {
		return s
	}
	return fmt.Sprintf("%s,... (%d names)", names[0], len(names))
}

// Defaults of BudgetConfig.
const (
	// BudgetMaxWaitDefault is the longest a waiting order sleeps before
	// it checks back by itself; Serve normally wakes it first.
	BudgetMaxWaitDefault = time.Hour
	// BudgetGrantTTLDefault is how long a grant Serve made waits for its
	// order to claim it. It exceeds BudgetMaxWaitDefault, so an order
	// whose wake-up was lost still finds its grant when it checks back.
	BudgetGrantTTLDefault = 2 * time.Hour
	// BudgetServeMaxDefault bounds the grants of one Serve.
	BudgetServeMaxDefault = 256
)

// BudgetConfig configures Budgets.
type BudgetConfig struct {
	// Prefix of every key; keep the scheduler's {hash tag}. Defaults to
	// PrefixDefault.
	Prefix string
	// MaxWait is the longest Wait.RetryAt lies ahead. Defaults to
	// BudgetMaxWaitDefault.
	MaxWait time.Duration
	// GrantTTL is how long a grant waits to be claimed; it must exceed
	// MaxWait. Defaults to BudgetGrantTTLDefault.
	GrantTTL time.Duration
	// ServeMax bounds the grants of one Serve call. Defaults to
	// BudgetServeMaxDefault.
	ServeMax int
}

func (c *BudgetConfig) defaults() {
	if c.Prefix == "" {
		c.Prefix = PrefixDefault
	}
	if c.MaxWait == 0 {
		c.MaxWait = BudgetMaxWaitDefault
	}
	if c.GrantTTL == 0 {
		c.GrantTTL = BudgetGrantTTLDefault
	}
	if c.ServeMax <= 0 {
		c.ServeMax = BudgetServeMaxDefault
	}
}

// Validate checks the configuration, naming the field at fault.
func (c BudgetConfig) Validate() error {
	if c.MaxWait < time.Second {
		return fmt.Errorf("scheduler: budgets: MaxWait must be at least 1s, got %s", c.MaxWait)
	}
	if c.GrantTTL <= c.MaxWait {
		return fmt.Errorf("scheduler: budgets: GrantTTL (%s) must exceed MaxWait (%s)", c.GrantTTL, c.MaxWait)
	}
	return nil
}

// BudgetStats are cumulative counters of this process's budget calls.
type BudgetStats struct {
	// Granted counts Takes granted (at once or by Serve); Waited, Takes
	// that had to wait; Exempt, ARI renewals let through.
	Granted, Waited, Exempt atomic.Int64
	// Served counts grants made by Serve; RateLimited, 429s reported by
	// Pause.
	Served, RateLimited atomic.Int64
}

// Budgets runs the budget scripts. It is safe for concurrent use.
type Budgets struct {
	rdb   redis.UniversalClient
	cfg   BudgetConfig
	Stats BudgetStats
}

// NewBudgets returns Budgets on rdb.
func NewBudgets(rdb redis.UniversalClient, cfg BudgetConfig) (*Budgets, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Budgets{rdb: rdb, cfg: cfg}, nil
}

// Config returns the effective configuration.
func (b *Budgets) Config() BudgetConfig { return b.cfg }

//go:embed scripts/budget_lib.lua
var budgetLibSrc string

//go:embed scripts/budget_take.lua
var budgetTakeSrc string

//go:embed scripts/budget_serve.lua
var budgetServeSrc string

//go:embed scripts/budget_cancel.lua
var budgetCancelSrc string

//go:embed scripts/budget_pause.lua
var budgetPauseSrc string

//go:embed scripts/budget_refund.lua
var budgetRefundSrc string

//go:embed scripts/budget_spend.lua
var budgetSpendSrc string

//go:embed scripts/budget_status.lua
var budgetStatusSrc string

func budgetScript(body string) *redis.Script { return redis.NewScript(budgetLibSrc + "\n" + body) }

var (
	budgetTakeScript   = budgetScript(budgetTakeSrc)
	budgetServeScript  = budgetScript(budgetServeSrc)
	budgetCancelScript = budgetScript(budgetCancelSrc)
	budgetPauseScript  = budgetScript(budgetPauseSrc)
	budgetRefundScript = budgetScript(budgetRefundSrc)
	budgetSpendScript  = budgetScript(budgetSpendSrc)
	budgetStatusScript = budgetScript(budgetStatusSrc)
)

// The scripts build every key from the prefix (all under one hash tag),
// like the challenge scheduler's; this names one key of that slot for
// Redis Cluster to route by.
func (b *Budgets) keys() []string { return []string{b.cfg.Prefix + "bwait"} }

// wireNeed is a Need as the scripts read it.
type wireNeed struct {
	BID  string `json:"bid"`
	Kind string `json:"kind"`
	Key  string `json:"key"`
	N    int    `json:"n"`
	P    int64  `json:"p"` // ms
	Cost int    `json:"cost"`
	IX   string `json:"ix"`
}

func toWire(n Need) wireNeed {
	l := n.Ref.Limit
	if l.Unlimited() {
		l = Limit{}
	}
	return wireNeed{BID: n.Ref.ID(), Kind: string(n.Ref.Kind), Key: n.Ref.label(), N: l.Count, P: l.Period.Milliseconds(), Cost: n.Cost, IX: n.Ref.CA}
}

func wireJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain strings and numbers always marshal
	}
	return string(b)
}

// Errors.
var (
	// ErrBadRequest: a Request the scripts cannot take (no namespace, a
	// budget without a CA, duplicate budgets).
	ErrBadRequest = errors.New("scheduler: budgets: malformed request")
)

func (r Request) check() error {
	if !strings.Contains(r.ID, "/") || r.Namespace() == "" {
		return fmt.Errorf("%w: id %q is not <namespace>/<name>", ErrBadRequest, r.ID)
	}
	seen := make(map[string]bool, len(r.Needs))
	for _, n := range r.Needs {
		if n.Ref.CA == "" || n.Ref.Kind.perAccount() && n.Ref.Account == "" {
			return fmt.Errorf("%w: %s: budget %s has no CA or account", ErrBadRequest, r.ID, n.Ref.ID())
		}
		if seen[n.Ref.ID()] {
			return fmt.Errorf("%w: %s: budget %s twice", ErrBadRequest, r.ID, n.Ref.ID())
		}
		seen[n.Ref.ID()] = true
	}
	return nil
}

// Decision is the answer of Take.
type Decision struct {
	// Granted: the request may go ahead; it took Taken.
	Granted bool
	// Taken are the needs whose units were taken (Cost > 0), for Refund.
	Taken []Need
	// Wait says what the request waits for when not granted.
	Wait *Wait
	// Now is Redis' time of the decision.
	Now time.Time
}

// Wait is why and until when a request waits.
type Wait struct {
	// Budget is the budget it waits on, with its effective limit.
	Budget BudgetRef
	// At is when the budget can next serve: its next refill or the end of
	// its pause. Orders queued ahead are served first.
	At time.Time
	// RetryAt is when the request should check back by itself if nothing
	// wakes it sooner: its estimated turn, at most MaxWait from now.
	RetryAt time.Time
	// Waiting is the number of requests waiting on the budget.
	Waiting int64
	// PausedUntil is the end of a pause a 429 set (zero if none).
	PausedUntil time.Time
}

// Reason renders the wait for status reasons and events:
//
//	Waiting for rate limit: certificates per registered domain example.com, 50 per 168h, next at 2026-11-25T13:14:28Z (3 waiting)
func (w *Wait) Reason() string {
	var sb strings.Builder
	sb.WriteString("Waiting for rate limit: ")
	sb.WriteString(w.Budget.String())
	if !w.PausedUntil.IsZero() && !w.PausedUntil.Before(w.At) {
		fmt.Fprintf(&sb, ", paused by the CA's 429 until %s", w.PausedUntil.UTC().Format(time.RFC3339))
	} else {
		fmt.Fprintf(&sb, ", next at %s", w.At.UTC().Format(time.RFC3339))
	}
	if w.Waiting > 1 {
		fmt.Fprintf(&sb, " (%d waiting)", w.Waiting)
	}
	return sb.String()
}

// msTime converts a script's millisecond time (a decimal string).
func msTime(v any) time.Time {
	var f float64
	switch x := v.(type) {
	case string:
		f, _ = strconv.ParseFloat(x, 64)
	case int64:
		f = float64(x)
	}
	return time.UnixMicro(int64(math.Round(f * 1000)))
}

func toInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return 0
}

func toStr(v any) string { s, _ := v.(string); return s }

// Take takes all the budgets req needs, or none: it is granted (at once,
// or because Serve granted it while it waited), or it waits, in which
// case Serve grants it when its turn comes and the caller should come back
// at Wait.RetryAt at the latest. When Wait.At is not after Decision.Now,
// the budget could serve at once and only its queue holds the request
// back: call Serve. Calling Take again while waiting keeps the request's
// place (and updates its limits). An exempt request is granted without a
// Redis call.
func (b *Budgets) Take(ctx context.Context, req Request) (Decision, error) {
	if req.Exempt {
		b.Stats.Exempt.Add(1)
		return Decision{Granted: true, Now: time.Now()}, nil
	}
	if err := req.check(); err != nil {
		return Decision{}, err
	}
	needs := make([]wireNeed, len(req.Needs))
	for i, n := range req.Needs {
		needs[i] = toWire(n)
	}
	res, err := budgetTakeScript.Run(ctx, b.rdb, b.keys(), b.cfg.Prefix, req.ID, req.Namespace(),
		req.Score, b.cfg.MaxWait.Milliseconds(), wireJSON(needs)).Slice()
	if err != nil {
		return Decision{}, fmt.Errorf("scheduler: budgets: take %s: %w", req.ID, err)
	}
	if len(res) >= 3 && toStr(res[0]) == "granted" {
		b.Stats.Granted.Add(1)
		d := Decision{Granted: true, Now: msTime(res[1])}
		for _, n := range req.Needs {
			if n.Cost > 0 {
				d.Taken = append(d.Taken, n)
			}
		}
		return d, nil
	}
	if len(res) != 11 || toStr(res[0]) != "wait" {
		return Decision{}, fmt.Errorf("scheduler: budgets: take %s: malformed reply %v", req.ID, res)
	}
	b.Stats.Waited.Add(1)
	w := &Wait{
		At:      msTime(res[7]),
		RetryAt: msTime(res[8]),
		Waiting: toInt(res[9]),
	}
	bid := toStr(res[2])
	for _, n := range req.Needs {
		if n.Ref.ID() == bid {
			w.Budget = n.Ref
		}
	}
	if w.Budget.Kind == "" {
		// Waiting on a budget it no longer lists (its names changed):
		// report what the script knows.
		w.Budget = BudgetRef{Kind: Kind(toStr(res[3])), Label: toStr(res[4])}
	}
	w.Budget.Limit = Limit{Count: int(toInt(res[5])), Period: time.Duration(toInt(res[6])) * time.Millisecond}
	now := msTime(res[1])
	if p := msTime(res[10]); p.After(now) {
		w.PausedUntil = p
	}
	return Decision{Wait: w, Now: now}, nil
}

// ServeResult is what Serve granted.
type ServeResult struct {
	// Granted are the IDs of the requests granted; wake each up (publish
	// its transition) so that its Take claims the grant.
	Granted []string
	// Next is when a budget can next serve (zero when nothing waits):
	// when to call Serve again at the latest.
	Next time.Time
	// Now is Redis' time of the call.
	Now time.Time
}

// Serve grants waiting requests as far as their budgets allow, namespaces
// taking turns on each budget (see the package's budget rules).
func (b *Budgets) Serve(ctx context.Context) (ServeResult, error) {
	res, err := budgetServeScript.Run(ctx, b.rdb, b.keys(), b.cfg.Prefix, b.cfg.ServeMax,
		4*b.cfg.ServeMax, b.cfg.GrantTTL.Milliseconds()).Slice()
	if err != nil {
		return ServeResult{}, fmt.Errorf("scheduler: budgets: serve: %w", err)
	}
	if len(res) < 2 {
		return ServeResult{}, fmt.Errorf("scheduler: budgets: serve: malformed reply %v", res)
	}
	out := ServeResult{Now: msTime(res[0])}
	if toStr(res[1]) != "-1" {
		out.Next = msTime(res[1])
	}
	for _, v := range res[2:] {
		out.Granted = append(out.Granted, toStr(v))
	}
	b.Stats.Served.Add(int64(len(out.Granted)))
	return out, nil
}

// Cancel forgets request id: it leaves its queue, and a grant it has not
// claimed is dropped (what the grant took stays spent). Call it when an
// order is deleted or fails while it waits. It reports whether id was
// waiting or granted.
func (b *Budgets) Cancel(ctx context.Context, id string) (bool, error) {
	n, err := budgetCancelScript.Run(ctx, b.rdb, b.keys(), b.cfg.Prefix, id).Int()
	if err != nil {
		return false, fmt.Errorf("scheduler: budgets: cancel %s: %w", id, err)
	}
	return n == 1, nil
}

// Refund gives back units the CA did not count: all of a grant's Taken
// when its new-order request failed, or its certificate and duplicate
// needs when the order became invalid and never issued (the CA counted the
// new order). Budgets that refilled meanwhile are left full.
func (b *Budgets) Refund(ctx context.Context, needs []Need) error {
	if len(needs) == 0 {
		return nil
	}
	w := make([]wireNeed, len(needs))
	for i, n := range needs {
		w[i] = toWire(n)
	}
	if err := budgetRefundScript.Run(ctx, b.rdb, b.keys(), b.cfg.Prefix, wireJSON(w)).Err(); err != nil {
		return fmt.Errorf("scheduler: budgets: refund %d budgets: %w", len(needs), err)
	}
	return nil
}

// Spend counts an event the CA counts by itself, a failed validation
// (see FailedValidation), while the budget has a unit left, as Boulder
// does. It reports whether it was counted.
func (b *Budgets) Spend(ctx context.Context, need Need) (bool, error) {
	if need.Ref.CA == "" {
		return false, fmt.Errorf("%w: spend: budget %s has no CA", ErrBadRequest, need.Ref.ID())
	}
	res, err := budgetSpendScript.Run(ctx, b.rdb, b.keys(), b.cfg.Prefix, wireJSON(toWire(need))).Slice()
	if err != nil {
		return false, fmt.Errorf("scheduler: budgets: spend %s: %w", need.Ref.ID(), err)
	}
	return len(res) == 2 && toInt(res[1]) == 1, nil
}

// Pause stops budget ref for the whole fleet after the CA answered 429:
// for retryAfter (the CA's Retry-After; 0 waits one refill), counted from
// Redis' clock, and empties it so that the fleet resumes at the refill
// rate. observed is the CA's own limit from its problem document (see
// ParseRateLimited; zero if unknown): the budget paces by it, where it is
// stricter than ref.Limit, for 24 of its periods (at least an hour) or
// until ref.Limit changes. It returns the end of the
// pause (a later pause already set is kept).
func (b *Budgets) Pause(ctx context.Context, ref BudgetRef, retryAfter time.Duration, observed Limit) (time.Time, error) {
	if ref.CA == "" {
		return time.Time{}, fmt.Errorf("%w: pause: budget %s has no CA", ErrBadRequest, ref.ID())
	}
	if observed.Unlimited() {
		observed = Limit{}
	}
	res, err := budgetPauseScript.Run(ctx, b.rdb, b.keys(), b.cfg.Prefix, wireJSON(toWire(Need{Ref: ref})),
		max(retryAfter, 0).Milliseconds(), observed.Count, observed.Period.Milliseconds()).Slice()
	if err != nil {
		return time.Time{}, fmt.Errorf("scheduler: budgets: pause %s: %w", ref.ID(), err)
	}
	if len(res) != 2 {
		return time.Time{}, fmt.Errorf("scheduler: budgets: pause %s: malformed reply %v", ref.ID(), res)
	}
	b.Stats.RateLimited.Add(1)
	return msTime(res[1]), nil
}

// BudgetStatus is one budget as describe and metrics show it.
type BudgetStatus struct {
	// Budget, with its effective limit. Per-account budgets carry their
	// Account (filter on it to show one Issuer's), per-CA ones their CA.
	Budget BudgetRef
	// ID is the budget's ID.
	ID string
	// Configured is the limit the Issuer sets (Budget.Limit may be a
	// stricter one learned from a 429).
	Configured Limit
	// Level is the units left now (-1: unlimited).
	Level int
	// NextRefill is when Level next grows (zero when full or unlimited);
	// FullAt when the budget is full again.
	NextRefill, FullAt time.Time
	// Waiting is the number of requests waiting on the budget.
	Waiting int64
	// PausedUntil is the end of a pause by a 429 (zero if none).
	PausedUntil time.Time
	// RateLimited counts the 429s reported on the budget.
	RateLimited int64
}

// BudgetOverview are the budgets of one CA in use.
type BudgetOverview struct {
	// Budgets are the most constrained first: those with waiters, then by
	// how long until they are full. At most the max asked for.
	Budgets []BudgetStatus
	// Total is the number of budgets in use (not full).
	Total int64
	// Now is Redis' time.
	Now time.Time
}

// Status reports the budgets of the CA of directoryURL that are in use
// (budgets that are full and idle are not kept), at most max of them.
func (b *Budgets) Status(ctx context.Context, directoryURL string, max int) (BudgetOverview, error) {
	if max <= 0 {
		max = 100
	}
	res, err := budgetStatusScript.Run(ctx, b.rdb, b.keys(), b.cfg.Prefix, CAScope(directoryURL), max).Slice()
	if err != nil {
		return BudgetOverview{}, fmt.Errorf("scheduler: budgets: status: %w", err)
	}
	const fields = 11
	if len(res) < 2 || (len(res)-2)%fields != 0 {
		return BudgetOverview{}, fmt.Errorf("scheduler: budgets: status: malformed reply of %d values", len(res))
	}
	out := BudgetOverview{Now: msTime(res[0]), Total: toInt(res[1])}
	for i := 2; i+fields <= len(res); i += fields {
		r := res[i : i+fields]
		st := BudgetStatus{
			ID:          toStr(r[0]),
			Budget:      refOf(toStr(r[0]), toStr(r[2])),
			Configured:  Limit{Count: int(toInt(r[3])), Period: time.Duration(toInt(r[4])) * time.Millisecond},
			Waiting:     toInt(r[9]),
			RateLimited: toInt(r[10]),
		}
		st.Budget.Limit = Limit{Count: int(toInt(r[5])), Period: time.Duration(toInt(r[6])) * time.Millisecond}
		if p := msTime(r[8]); p.After(out.Now) {
			st.PausedUntil = p
		}
		st.Level, st.NextRefill, st.FullAt = level(st.Budget.Limit, msTime(r[7]), out.Now)
		if st.PausedUntil.After(st.NextRefill) && st.Level < st.Budget.Limit.Count {
			st.NextRefill = st.PausedUntil
		}
		out.Budgets = append(out.Budgets, st)
	}
	return out, nil
}

// refOf rebuilds a BudgetRef (without its limit) from its ID.
func refOf(id, label string) BudgetRef {
	parts := strings.SplitN(id, "|", 3)
	if len(parts) != 3 {
		return BudgetRef{Label: label}
	}
	r := BudgetRef{Kind: Kind(parts[0]), Key: parts[2], Label: label}
	if r.Kind.perAccount() {
		r.Account = parts[1]
	} else {
		r.CA = parts[1]
	}
	return r
}

// level computes a GCRA bucket's units left at now, when the next one
// refills and when it is full.
func level(l Limit, tat, now time.Time) (int, time.Time, time.Time) {
	if l.Unlimited() {
		return -1, time.Time{}, time.Time{}
	}
	if !tat.After(now) {
		return l.Count, time.Time{}, time.Time{}
	}
	t := l.Period / time.Duration(l.Count)
	used := float64(tat.Sub(now)) / float64(t)
	left := int(math.Floor(float64(l.Count) - used + 1e-9))
	left = max(min(left, l.Count), 0)
	next := tat.Add(-time.Duration(l.Count-left-1) * t)
	return left, next, tat
}

// BudgetCounters are fleet-wide counters of the budgets.
type BudgetCounters struct {
	// Granted at once, Waited, Served (granted after waiting) and
	// RateLimited: 429s reported by Pause.
	Granted, Waited, Served, RateLimited int64
}

// Counters reads the fleet-wide counters.
func (b *Budgets) Counters(ctx context.Context) (BudgetCounters, error) {
	m, err := b.rdb.HGetAll(ctx, b.cfg.Prefix+"bstat").Result()
	if err != nil {
		return BudgetCounters{}, fmt.Errorf("scheduler: budgets: counters: %w", err)
	}
	n := func(k string) int64 { v, _ := strconv.ParseInt(m[k], 10, 64); return v }
	return BudgetCounters{Granted: n("granted"), Waited: n("waited"), Served: n("served"), RateLimited: n("ratelimited")}, nil
}

// Boulder's wording of its rate-limit problems (ratelimits/limiter.go),
// current and older. Matching the CA's text is the only way to tell which
// limit refused: RFC 8555 gives the problem type and nothing finer.
var (
	rlCountRE  = regexp.MustCompile(`\((\d+)\)`)
	rlPeriodRE = regexp.MustCompile(`in the last ([0-9][0-9hms.]*)`)
	rlQuotedRE = regexp.MustCompile(`"([^"]+)"`)
)

// ParseRateLimited reads a rateLimited problem's detail as Boulder words
// it, e.g. `too many certificates (50) already issued for "example.com" in
// the last 168h0m0s, retry after 2026-11-25 13:14:28 UTC: see ...`. It
// returns the limit's kind, the key it names (the registered domain or the
// hostname, when quoted), and the CA's limit when the detail states it
// (zero otherwise). ok is false when the wording names no known limit.
func ParseRateLimited(detail string) (kind Kind, key string, observed Limit, ok bool) {
	d := strings.ToLower(detail)
	switch {
	case strings.Contains(d, "new orders"):
		kind = KindNewOrders
	case strings.Contains(d, "exact set"):
		kind = KindDuplicates
	case strings.Contains(d, "failed authorization"), strings.Contains(d, "failed validation"):
		kind = KindFailedValidations
	case strings.Contains(d, "registrations"), strings.Contains(d, "new accounts"):
		kind = KindNewAccounts
	case strings.Contains(d, "certificates") && strings.Contains(d, "already issued"):
		kind = KindCertificatesPerDomain
	default:
		return "", "", Limit{}, false
	}
	if kind == KindCertificatesPerDomain || kind == KindFailedValidations {
		if m := rlQuotedRE.FindStringSubmatch(detail); m != nil {
			key = strings.ToLower(m[1])
		}
	}
	if m := rlCountRE.FindStringSubmatch(d); m != nil {
		if p := rlPeriodRE.FindStringSubmatch(d); p != nil {
			n, errN := strconv.Atoi(m[1])
			dur, errP := time.ParseDuration(strings.TrimRight(p[1], "."))
			if errN == nil && errP == nil && n > 0 && dur > 0 {
				observed = Limit{Count: n, Period: dur}
			}
		}
	}
	return kind, key, observed, true
}

// RateLimitedBudget picks the budget of req that a rateLimited problem
// with detail refers to, and the CA's limit it names: the need of that
// kind (and key, if the detail names one). A detail that names no known
// limit, or one req does not need, pauses the new-order budget (the
// request's first need), which stops the account's new orders and nothing
// else. ok is false when req needs nothing.
func (r Request) RateLimitedBudget(detail string) (ref BudgetRef, observed Limit, ok bool) {
	if len(r.Needs) == 0 {
		return BudgetRef{}, Limit{}, false
	}
	kind, key, observed, known := ParseRateLimited(detail)
	if known {
		for _, n := range r.Needs {
			if n.Ref.Kind == kind && (key == "" || n.Ref.Key == key || n.Ref.Label == key) {
				return n.Ref, observed, true
			}
		}
	}
	for _, n := range r.Needs {
		if n.Ref.Kind == KindNewOrders {
			return n.Ref, Limit{}, true
		}
	}
	return r.Needs[0].Ref, Limit{}, true
}
