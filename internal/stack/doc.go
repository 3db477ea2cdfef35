// Package stack starts the real dependencies of acmeq on loopback: an
// embedded NATS JetStream server, a redis-server child process, an
// in-process Pebble ACME CA and a tiny DNS server. It is used by `acmeq dev`
// and by the tests.
package stack
