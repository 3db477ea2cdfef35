// Package producer is how users put Issuers, ClusterIssuers and
// Certificates into acmeq: it
// decodes manifests (YAML, JSON, JSON arrays, JSON Lines), fills in
// cert-manager's defaults, validates, writes the resource to the store and
// queues a transition for the workers. The CLI's `acmeq apply -f FILE` and
// `acmeq request` are thin wrappers around it.
//
// # Idempotent publishing
//
// [Client.Apply] may be called any number of times with the same manifest,
// like `kubectl apply`:
//
//   - A resource that does not exist is created with an empty status
//     ([Created]) and one apply transition is published.
//   - A resource whose stored spec and labels equal the applied ones is left
//     alone ([Unchanged]) and nothing is published, so re-applying a file of
//     100,000 certificates costs reads only.
//   - A resource whose spec or labels differ has them replaced, keeping the
//     status the workers recorded ([Configured]), and one apply transition
//     is published.
//
// Writes are compare-and-set on the KV revision and are retried on conflict,
// so concurrent producers and workers never overwrite each other. The
// transition carries the new revision as its generation, which becomes part
// of its Nats-Msg-Id: a retried publish of the same write is stored once by
// the work stream's duplicate window, while every distinct write wakes the
// workers. If the publish fails after the write succeeded, Apply reports the
// error; applying again queues it: an unchanged resource is queued again
// under the same message ID, which the work stream drops as a duplicate
// when the first publish did arrive.
//
// Invalid input is rejected before anything is written or queued: see
// [ValidateCertificate] and [ValidateIssuer], whose errors name the field
// and the rule broken, e.g.
//
//	spec.dnsNames[2]: "foo..example.com" is not a valid DNS name: empty label
//
// # Secret ownership
//
// A Secret has one owner. Apply claims the Secret a resource writes (a
// Certificate's spec.secretName, an Issuer's account key; see
// [SecretClaim]) in the store before writing the resource, and refuses
// one that names a Secret another resource owns, with an *InvalidError
// matching [ErrSecretOwned]:
//
//	spec.secretName: Secret "shared-tls" is owned by certificate/default/a
//
// # ClusterIssuers
//
// A ClusterIssuer is an Issuer without a namespace (messages.KindClusterIssuer,
// the same Go type): a Certificate of any namespace uses it with
// `issuerRef: {kind: ClusterIssuer, name: ...}`, and all of them share its
// one ACME account. Its Secrets (account key, External Account Binding
// key, DNS-01 credentials) are in the workers' cluster resource namespace
// (ACMEQ_CLUSTER_RESOURCE_NAMESPACE), which the producer does not know: a
// namespace given on a ClusterIssuer is cleared, as Kubernetes clears it,
// and its account key Secret is claimed by the worker, not by Apply.
//
// [Client.PutSecret] wakes the issuers that wait for the Secret it wrote
// (an External Account Binding key), so fixing a Secret fixes the issuer
// at once.
//
// # Hostile input
//
// [Decoder] always ends and holds one document at a time, of at most
// [MaxDocumentSize] bytes, [MaxDocumentDepth] levels and
// [MaxDocumentValues] values; a read error, a syntax error or a limit
// stops the input with one [DecodeError] naming the document, line and
// column. A resource is at most [MaxResourceSize] bytes of JSON, below
// NATS's payload limit. Values repeated in errors are cut to 64 bytes and
// quoted.
package producer
