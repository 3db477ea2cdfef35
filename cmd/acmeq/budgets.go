package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/acmeq/acmeq/internal/connect"
	"github.com/acmeq/acmeq/internal/view"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/scheduler"
)

// budgetRowsMax bounds the budgets describe lists for one Issuer (the most
// constrained first); the rest are counted.
const budgetRowsMax = 20

// redisEnv is what describe reads to show an Issuer's budgets.
type redisEnv struct {
	Redis connect.RedisConfig
}

func (e redisEnv) validate(v *validation) { v.connect(e.Redis.Validate()) }

// budgetSections returns, for each Issuer among objs, the section of its
// rate-limit budgets, read from Redis (where the fleet keeps them). Other
// kinds get none. When Redis cannot be read the section says why: the rest
// of describe comes from JetStream and is shown anyway.
func budgetSections(ctx context.Context, objs []messages.Object, now time.Time) map[messages.Object]view.Section {
	var issuers []*messages.Issuer
	for _, o := range objs {
		if iss, ok := o.(*messages.Issuer); ok && iss.Spec.ACME != nil {
			issuers = append(issuers, iss)
		}
	}
	if len(issuers) == 0 {
		return nil
	}
	out := map[messages.Object]view.Section{}
	unavailable := func(why string) map[messages.Object]view.Section {
		for _, iss := range issuers {
			out[iss] = view.Section{Title: "Rate Limits", Empty: "<unavailable: " + why + ">"}
		}
		return out
	}
	e := redisEnv{Redis: connect.RedisConfig{URL: RedisURLDefault, ConnectTimeout: 2 * time.Second}}
	if err := readEnv(&e, environ()); err != nil {
		return unavailable(err.Error())
	}
	rdb, err := e.Redis.Client()
	if err != nil {
		return unavailable(err.Error())
	}
	defer rdb.Close()
	b, err := scheduler.NewBudgets(rdb, scheduler.BudgetConfig{})
	if err != nil {
		return unavailable(err.Error())
	}
	for _, iss := range issuers {
		out[iss] = issuerBudgets(ctx, b, iss, now)
	}
	return out
}

// issuerBudgets is the section of one Issuer: the budgets of its account,
// and the CA-wide ones (per registered domain, per exact set of names)
// its orders share with every account of the CA.
func issuerBudgets(ctx context.Context, b *scheduler.Budgets, iss *messages.Issuer, now time.Time) view.Section {
	sec := view.Section{
		Title:  "Rate Limits",
		Header: []string{"Budget", "Limit", "Left", "Next Refill", "Waiting", "Paused Until", "429s"},
		Empty:  "<none in use>",
	}
	limits, err := messages.ResolveRateLimits(iss.Spec.ACME.Server, iss.Spec.ACME.RateLimits)
	if err == nil && limits.Preset == messages.RateLimitPresetNone && iss.Spec.ACME.RateLimits == nil {
		sec.Empty = "<none configured (preset none): a 429 still pauses the fleet>"
	}
	ov, err := b.Status(ctx, iss.Spec.ACME.Server, 4*budgetRowsMax)
	if err != nil {
		sec.Empty = "<unavailable: " + err.Error() + ">"
		return sec
	}
	account := ""
	if iss.Status.ACME != nil {
		account = iss.Status.ACME.URI
	}
	more := 0
	for _, st := range ov.Budgets {
		if st.Budget.Account != "" && st.Budget.Account != account {
			continue // another Issuer's account
		}
		if len(sec.Rows) == budgetRowsMax {
			more++
			continue
		}
		sec.Rows = append(sec.Rows, budgetRow(st, ov.Now))
	}
	if more > 0 || ov.Total > int64(len(ov.Budgets)) {
		sec.Rows = append(sec.Rows, []string{fmt.Sprintf("(and %d more in use)", more+int(ov.Total)-len(ov.Budgets)), "", "", "", "", "", ""})
	}
	return sec
}

func budgetRow(st scheduler.BudgetStatus, now time.Time) []string {
	name := st.Budget.Kind.String()
	if l := st.Budget.Label; l != "" {
		name += " " + l
	} else if k := st.Budget.Key; k != "" {
		name += " " + k
	}
	limit := st.Budget.Limit.String()
	if st.Budget.Limit != st.Configured {
		limit += " (the CA's; configured " + st.Configured.String() + ")"
	}
	left := strconv.Itoa(st.Level)
	if st.Level < 0 {
		left = "unlimited"
	}
	at := func(t time.Time) string {
		if t.IsZero() {
			return "<none>"
		}
		return "in " + t.Sub(now).Round(time.Second).String()
	}
	return []string{name, limit, left, at(st.NextRefill), strconv.FormatInt(st.Waiting, 10), at(st.PausedUntil), strconv.FormatInt(st.RateLimited, 10)}
}
