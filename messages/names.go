package messages

import (
	"fmt"
	"strings"
)

// Stream, bucket and subject names. Every name acmeq puts on the wire is
// defined here and nowhere else.
const (
	// WorkStream is the work-queue stream holding every transition message.
	WorkStream = "ACMEQ_WORK"
	// WorkSubjectPrefix prefixes every transition subject:
	// acmeq.work.<kind>.<namespace>.<name>.
	WorkSubjectPrefix = "acmeq.work"

	// EventStream holds the events users tail and describe shows.
	EventStream = "ACMEQ_EVENTS"
	// EventSubjectPrefix prefixes every event subject:
	// acmeq.events.<kind>.<namespace>.<name>.
	EventSubjectPrefix = "acmeq.events"

	// DeadLetterStream keeps poison messages with their payload.
	DeadLetterStream = "ACMEQ_DEAD"
	// DeadLetterSubjectPrefix prefixes dead letters: acmeq.dead.<kind>.
	DeadLetterSubjectPrefix = "acmeq.dead"

	// SecretBucket is the KV bucket of encrypted secrets (keys, certificates).
	SecretBucket = "ACMEQ_SECRETS"
)

// Kind names a resource kind. Its lower-case form is used in subjects,
// bucket names and the CLI.
type Kind string

// The resource kinds.
const (
	KindIssuer Kind = "Issuer"
	// KindClusterIssuer is an Issuer that is not namespaced: Certificates
	// of every namespace may use it (issuerRef.kind: ClusterIssuer), with
	// one ACME account for them all. Its Go type is Issuer (see
	// Issuer.GetKind); its metadata.namespace is empty (see ClusterScope).
	KindClusterIssuer      Kind = "ClusterIssuer"
	KindCertificate        Kind = "Certificate"
	KindCertificateRequest Kind = "CertificateRequest"
	KindOrder              Kind = "Order"
	KindChallenge          Kind = "Challenge"
	KindSecret             Kind = "Secret"
)

// ReconciledKinds are the kinds that have a work consumer, in the order a
// certificate flows through them.
var ReconciledKinds = []Kind{KindIssuer, KindClusterIssuer, KindCertificate, KindCertificateRequest, KindOrder, KindChallenge}

// ClusterScope is the namespace token of a cluster-scoped resource (a
// ClusterIssuer, whose metadata.namespace is empty) in its KV key and its
// subjects: acmeq.work.clusterissuer._.<name>, key "_.<name>" in
// ACMEQ_CLUSTERISSUERS. No namespace can be spelled so (names are
// [a-z0-9-]), and the kind is part of every key's bucket and every
// subject, so it is never confused with a namespace. Key, WorkSubject,
// ScheduleSubject and EventSubject write it for an empty namespace;
// SplitKey reads it back as "".
const ClusterScope = "_"

// IsClusterScoped reports whether resources of kind k have no namespace
// (ClusterIssuer).
func IsClusterScoped(k Kind) bool { return k == KindClusterIssuer }

// scope is the namespace token of keys and subjects: ns, or ClusterScope
// for the empty namespace of a cluster-scoped resource.
func scope(ns string) string {
	if ns == "" {
		return ClusterScope
	}
	return ns
}

// Token is the lower-case form used in subjects and consumer names.
func (k Kind) Token() string { return strings.ToLower(string(k)) }

// Bucket is the KV bucket holding resources of this kind.
func (k Kind) Bucket() string {
	if k == KindSecret {
		return SecretBucket
	}
	return "ACMEQ_" + strings.ToUpper(string(k)) + "S"
}

// ParseKind maps a user's spelling (kubectl habits: "order", "orders",
// "certificaterequest", "cr", "cert", "issuer") to a Kind.
func ParseKind(s string) (Kind, error) {
	switch strings.ToLower(s) {
	case "issuer", "issuers":
		return KindIssuer, nil
	case "clusterissuer", "clusterissuers":
		return KindClusterIssuer, nil
	case "certificate", "certificates", "cert", "certs":
		return KindCertificate, nil
	case "certificaterequest", "certificaterequests", "cr", "crs":
		return KindCertificateRequest, nil
	case "order", "orders":
		return KindOrder, nil
	case "challenge", "challenges":
		return KindChallenge, nil
	case "secret", "secrets":
		return KindSecret, nil
	}
	return "", fmt.Errorf("messages: unknown kind %q (want issuer, clusterissuer, certificate, certificaterequest, order or challenge)", s)
}

// WorkSubject is the subject of a transition for one resource.
func WorkSubject(k Kind, namespace, name string) string {
	return WorkSubjectPrefix + "." + k.Token() + "." + scope(namespace) + "." + name
}

// WorkFilter is the filter subject of the consumer for one kind:
// acmeq.work.<kind>.*.* (a namespace and a name, nothing more or less).
func WorkFilter(k Kind) string { return WorkSubjectPrefix + "." + k.Token() + ".*.*" }

// ScheduleSubjectPrefix prefixes the subjects of scheduled transitions
// (JetStream message schedules, ADR-51) inside the work stream:
// acmeq.work.schedule.<kind>.<namespace>.<name>. There is at most one
// pending schedule per subject: publishing again replaces it. When it is
// due, the server publishes its payload on the resource's work subject.
const ScheduleSubjectPrefix = WorkSubjectPrefix + ".schedule"

// ScheduleSubject is the schedule subject of one resource.
func ScheduleSubject(k Kind, namespace, name string) string {
	return ScheduleSubjectPrefix + "." + k.Token() + "." + scope(namespace) + "." + name
}

// WorkSubjects are the subjects of the work stream: exactly those a
// consumer reads, plus the schedule subjects. A message published on any
// other subject under acmeq.work (a typo, an unknown kind, a missing name)
// is refused by the server ("no responders"), never stored unread.
func WorkSubjects() []string {
	subjects := make([]string, 0, len(ReconciledKinds)+1)
	for _, k := range ReconciledKinds {
		subjects = append(subjects, WorkFilter(k))
	}
	return append(subjects, ScheduleSubjectPrefix+"."+KindCertificate.Token()+".*.*")
}

// EventSubject is the subject of events about one resource.
func EventSubject(k Kind, namespace, name string) string {
	return EventSubjectPrefix + "." + k.Token() + "." + scope(namespace) + "." + name
}

// EventFilter selects events: empty arguments match everything at that level.
func EventFilter(k Kind, namespace, name string) string {
	parts := []string{EventSubjectPrefix, "*", "*", "*"}
	if k != "" {
		parts[1] = k.Token()
	}
	if namespace != "" {
		parts[2] = namespace
	}
	if name != "" {
		parts[3] = name
	}
	return strings.Join(parts, ".")
}

// DeadLetterSubject is where a poison message for a kind is kept.
func DeadLetterSubject(k Kind) string {
	t := "unknown"
	if k != "" {
		t = k.Token()
	}
	return DeadLetterSubjectPrefix + "." + t
}

// Key is a resource's key in its KV bucket: <namespace>.<name>, or
// <ClusterScope>.<name> for a cluster-scoped resource (empty namespace).
func Key(namespace, name string) string { return scope(namespace) + "." + name }

// SplitKey undoes Key (ClusterScope gives the empty namespace).
func SplitKey(key string) (namespace, name string, ok bool) {
	namespace, name, ok = strings.Cut(key, ".")
	if namespace == ClusterScope {
		namespace = ""
	}
	return namespace, name, ok
}
