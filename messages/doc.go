// Package messages holds acmeq's wire types: the resources (Issuer,
// Certificate, CertificateRequest, Order, Challenge, Secret) with
// cert-manager's field names and states, the transition messages that drive
// the workers, the events users tail, and every subject, stream and bucket
// name. It is a leaf: it imports nothing else of acmeq, so producers in any
// language can mirror it (see schema/ for the JSON Schema).
package messages
