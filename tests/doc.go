// Package tests holds acmeq's end-to-end tests: real NATS JetStream, a real
// redis-server, an in-process Pebble CA and the HTTP-01 responder, started
// by the tests on free loopback ports.
package tests
