package tests

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/acmeq/acmeq/internal/dev"
	"github.com/acmeq/acmeq/messages"
)

// dumpUnfinished logs every resource that is not finished, to explain a
// wait that timed out.
func dumpUnfinished(t testing.TB, ctx context.Context, env *dev.Env) {
	t.Helper()
	ctx = context.WithoutCancel(ctx)
	for _, k := range []messages.Kind{messages.KindCertificate, messages.KindCertificateRequest, messages.KindOrder, messages.KindChallenge} {
		objs, err := env.Store.List(ctx, k, "")
		if err != nil {
			t.Logf("list %s: %v", k, err)
			continue
		}
		for _, o := range objs {
			done := false
			switch r := o.(type) {
			case *messages.Certificate:
				done = messages.IsReady(r.Status.Conditions)
			case *messages.CertificateRequest:
				done = messages.IsReady(r.Status.Conditions)
			case *messages.Order:
				done = r.Status.State.Final()
			case *messages.Challenge:
				done = r.Status.State.Final() && !r.Status.Processing
			}
			if done {
				continue
			}
			var status any
			b, _ := json.Marshal(o)
			var m map[string]any
			_ = json.Unmarshal(b, &m)
			status = m["status"]
			sb, _ := json.Marshal(status)
			t.Logf("unfinished %s %s: %s", k, o.GetMeta().Name, sb)
			if ch, ok := o.(*messages.Challenge); ok {
				st, err := env.Scheduler().Lookup(ctx, ch.Metadata.Namespace+"/"+ch.Metadata.Name)
				t.Logf("  scheduler: %q %v", st, err)
			}
		}
	}
}
