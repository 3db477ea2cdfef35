// Package messages holds acmeq's wire types: the resources (Issuer,
// ClusterIssuer, Certificate, CertificateRequest, Order, Challenge, Secret)
// with cert-manager's field names and states, the transition messages that drive
// the workers, the events users tail, and every subject, stream and bucket
// name. It is a leaf: it imports nothing else of acmeq, so producers in any
// language can mirror it (see schema/ for the JSON Schema).
//
// Every resource is namespaced except the ClusterIssuer: its
// metadata.namespace is empty, and where a key or a subject needs a
// namespace token it has ClusterScope ("_") instead (see Key and
// WorkSubject). It shares the Issuer's Go type, told apart by its kind.
package messages
