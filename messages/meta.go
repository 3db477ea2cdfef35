package messages

import (
	"encoding/json"
	"fmt"
	"time"
)

// APIVersion is the version of every resource and message acmeq writes.
// Readers reject other versions as poison rather than guess.
const APIVersion = "acmeq.io/v1"

// TypeMeta names the version and kind of a resource, as in Kubernetes.
type TypeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       Kind   `json:"kind"`
}

// ObjectMeta is the subset of Kubernetes' ObjectMeta acmeq keeps.
type ObjectMeta struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// ResourceVersion is the KV revision the resource was read at. It is
	// filled in on read and never stored.
	ResourceVersion   uint64            `json:"resourceVersion,omitempty"`
	CreationTimestamp time.Time         `json:"creationTimestamp"`
	Labels            map[string]string `json:"labels,omitempty"`
	// OwnerReference names the resource that created this one (an Order
	// owns its Challenges), empty for resources users create.
	OwnerReference *ObjectReference `json:"ownerReference,omitempty"`
	// DeletionTimestamp is set when a user deleted the resource and a
	// worker is removing what belongs to it, as in Kubernetes; the
	// resource is gone once that is done.
	DeletionTimestamp *time.Time `json:"deletionTimestamp,omitempty"`
}

// ObjectReference points at a resource in the same store.
type ObjectReference struct {
	Kind      Kind   `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// IssuerRef names the Issuer of a Certificate, CertificateRequest, Order or
// Challenge. Kind is "Issuer" (an Issuer in the resource's own namespace,
// the default) or "ClusterIssuer"; Group is "cert-manager.io" as users
// expect.
type IssuerRef struct {
	Name  string `json:"name"`
	Kind  string `json:"kind,omitempty"`
	Group string `json:"group,omitempty"`
}

// IssuerKind is the kind the reference names: KindClusterIssuer for
// "ClusterIssuer", KindIssuer otherwise (empty included).
func (r IssuerRef) IssuerKind() Kind {
	if r.Kind == string(KindClusterIssuer) {
		return KindClusterIssuer
	}
	return KindIssuer
}

// IssuerNamespace is the namespace of the issuer the reference names, for
// a resource in namespace ns: ns for an Issuer, "" for a ClusterIssuer.
func (r IssuerRef) IssuerNamespace(ns string) string {
	if r.IssuerKind() == KindClusterIssuer {
		return ""
	}
	return ns
}

// ConditionStatus is "True", "False" or "Unknown".
type ConditionStatus string

// Condition statuses.
const (
	ConditionTrue    ConditionStatus = "True"
	ConditionFalse   ConditionStatus = "False"
	ConditionUnknown ConditionStatus = "Unknown"
)

// ConditionReady is the only condition type acmeq sets.
const ConditionReady = "Ready"

// Condition is a Kubernetes-style status condition.
type Condition struct {
	Type               string          `json:"type"`
	Status             ConditionStatus `json:"status"`
	Reason             string          `json:"reason,omitempty"`
	Message            string          `json:"message,omitempty"`
	LastTransitionTime time.Time       `json:"lastTransitionTime"`
}

// SetCondition sets or replaces the condition of c's type, keeping its
// LastTransitionTime when the status did not change. It reports whether
// anything changed.
func SetCondition(conds *[]Condition, c Condition, now time.Time) bool {
	for i := range *conds {
		old := &(*conds)[i]
		if old.Type != c.Type {
			continue
		}
		if old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message {
			return false
		}
		c.LastTransitionTime = old.LastTransitionTime
		if old.Status != c.Status {
			c.LastTransitionTime = now
		}
		*old = c
		return true
	}
	c.LastTransitionTime = now
	*conds = append(*conds, c)
	return true
}

// GetCondition returns the condition of the given type, or nil.
func GetCondition(conds []Condition, typ string) *Condition {
	for i := range conds {
		if conds[i].Type == typ {
			return &conds[i]
		}
	}
	return nil
}

// IsReady reports whether the Ready condition is True.
func IsReady(conds []Condition) bool {
	c := GetCondition(conds, ConditionReady)
	return c != nil && c.Status == ConditionTrue
}

// Object is implemented by every resource.
type Object interface {
	GetMeta() *ObjectMeta
	GetKind() Kind
}

// Duration is a time.Duration written as Go writes durations ("2160h0m0s"),
// as Kubernetes' metav1.Duration; it reads "90m", "2160h" and the like.
type Duration struct {
	time.Duration
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string such as "720h".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string such as \"720h\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	d.Duration = v
	return nil
}
