// Package view renders acmeq's resources and events the way kubectl shows
// cert-manager's: `get` tables (kubectl's column alignment and ages),
// `describe` pages (kubectl's generic describer for custom resources, with
// its events table and aggregation), and the json, yaml and jsonpath
// outputs. It is pure: everything it shows is passed in, including "now",
// so its output is deterministic and table-tested.
package view
