package messages

import (
	"encoding/json"
	"slices"
	"testing"
)

// A ClusterIssuer has no namespace: its key and subjects carry
// ClusterScope in the namespace's place, and reading them back gives the
// empty namespace again.
func TestClusterScopedNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		got, want string
	}{
		{Key("", "le"), "_.le"},
		{Key("shop", "le"), "shop.le"},
		{WorkSubject(KindClusterIssuer, "", "le"), "acmeq.work.clusterissuer._.le"},
		{EventSubject(KindClusterIssuer, "", "le"), "acmeq.events.clusterissuer._.le"},
		{EventFilter(KindClusterIssuer, "", "le"), "acmeq.events.clusterissuer.*.le"},
		{KindClusterIssuer.Bucket(), "ACMEQ_CLUSTERISSUERS"},
		{WorkFilter(KindClusterIssuer), "acmeq.work.clusterissuer.*.*"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
	if ns, name, ok := SplitKey("_.le"); !ok || ns != "" || name != "le" {
		t.Errorf("SplitKey(_.le) = %q, %q, %v", ns, name, ok)
	}
	if !slices.Contains(WorkSubjects(), "acmeq.work.clusterissuer.*.*") {
		t.Errorf("WorkSubjects() = %v: the clusterissuer consumer's subject is missing", WorkSubjects())
	}
	for _, s := range []string{"clusterissuer", "clusterissuers", "ClusterIssuer"} {
		if k, err := ParseKind(s); err != nil || k != KindClusterIssuer {
			t.Errorf("ParseKind(%q) = %q, %v", s, k, err)
		}
	}
	if !IsClusterScoped(KindClusterIssuer) || IsClusterScoped(KindIssuer) {
		t.Error("IsClusterScoped: only ClusterIssuer is cluster-scoped")
	}
}

// Issuer and ClusterIssuer share the Go type; the kind is the TypeMeta's.
func TestIssuerKinds(t *testing.T) {
	t.Parallel()
	if k := NewIssuer(KindClusterIssuer).GetKind(); k != KindClusterIssuer {
		t.Errorf("NewIssuer(ClusterIssuer).GetKind() = %s", k)
	}
	if k := (&Issuer{}).GetKind(); k != KindIssuer {
		t.Errorf("Issuer{}.GetKind() = %s", k)
	}
	obj, ok := New(KindClusterIssuer)
	if !ok || obj.GetKind() != KindClusterIssuer {
		t.Fatalf("New(ClusterIssuer) = %T %v", obj, ok)
	}
	// Decoding a stored ClusterIssuer keeps its kind.
	var iss Issuer
	if err := json.Unmarshal([]byte(`{"apiVersion":"acmeq.io/v1","kind":"ClusterIssuer","metadata":{"name":"le"}}`), &iss); err != nil {
		t.Fatal(err)
	}
	if iss.GetKind() != KindClusterIssuer {
		t.Errorf("decoded kind = %s", iss.GetKind())
	}
	for _, tt := range []struct {
		ref    IssuerRef
		kind   Kind
		issuNS string
	}{
		{IssuerRef{Name: "a"}, KindIssuer, "shop"},
		{IssuerRef{Name: "a", Kind: "Issuer"}, KindIssuer, "shop"},
		{IssuerRef{Name: "a", Kind: "ClusterIssuer"}, KindClusterIssuer, ""},
	} {
		if k, ns := tt.ref.IssuerKind(), tt.ref.IssuerNamespace("shop"); k != tt.kind || ns != tt.issuNS {
			t.Errorf("%+v: kind %s namespace %q, want %s %q", tt.ref, k, ns, tt.kind, tt.issuNS)
		}
	}
}

// A ClusterIssuer's transition has no namespace; every other kind's has one.
func TestDecodeClusterIssuerTransition(t *testing.T) {
	t.Parallel()
	tr, err := DecodeTransition([]byte(`{"v":1,"kind":"ClusterIssuer","namespace":"","name":"le","action":"apply"}`))
	if err != nil || tr.Subject() != "acmeq.work.clusterissuer._.le" {
		t.Fatalf("DecodeTransition = %+v, %v", tr, err)
	}
	for _, bad := range []string{
		`{"v":1,"kind":"ClusterIssuer","namespace":"default","name":"le","action":"apply"}`,
		`{"v":1,"kind":"ClusterIssuer","namespace":"_","name":"le","action":"apply"}`,
		`{"v":1,"kind":"Issuer","namespace":"","name":"le","action":"apply"}`,
		`{"v":1,"kind":"Issuer","namespace":"_","name":"le","action":"apply"}`,
	} {
		if _, err := DecodeTransition([]byte(bad)); err == nil {
			t.Errorf("DecodeTransition(%s) accepted", bad)
		}
	}
}
