// Package ui is acmeq's fleet view (`acmeq ui`): a read-only web view of
// every certificate, with its describe page, events and order → challenge
// tree, the live event stream, and the scheduler's backlog, in-flight
// challenges, locks and work-queue lag; and the fleet's Prometheus metrics
// (cert-manager's certificate metrics under acmeq's prefix, the queue lag
// per consumer, the scheduler's gauges), exported once for the fleet.
//
// Pages are html/template renders of embedded templates with one small
// hand-written script: they work without JavaScript (filters are GET
// forms), and with it the certificate list refreshes itself when the index
// changes (Server-Sent Events), the events page adds events as they are
// recorded and the scheduler page refreshes every two seconds. Everything
// user- or CA-supplied is escaped by html/template; the Content Security
// Policy allows no inline script.
//
// The certificates come from an in-memory index fed by a KV watch on the
// Certificate bucket, so neither a page nor a scrape lists the bucket: a
// page filters and sorts the index and renders one page of it, and
// /metrics writes the per-certificate families straight from it.
//
// On loopback the view needs no credentials; anywhere else Config.Validate
// refuses to start without a bearer token or basic auth.
package ui
