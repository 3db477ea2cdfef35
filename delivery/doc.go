// Package delivery is the sync agent behind `acmeq sync`: it gets issued
// certificates out of the store onto the edge servers that use them.
//
// An Agent watches the Certificate and Secret buckets (KV watches, that is
// JetStream ordered consumers) and writes each selected Certificate — by
// namespace, names or a Kubernetes label selector — from its
// spec.secretName Secret, opened with ACMEQ_SECRET_KEY, to
//
//	<Dir>/<namespace>/<name>/tls.crt   leaf then chain           0644
//	<Dir>/<namespace>/<name>/tls.key   private key (PKCS#8 PEM)  0600
//	<Dir>/<namespace>/<name>/tls.pem   key then leaf and chain   0600 (HAProxy's crt)
//	<Dir>/<namespace>/<name>/ca.crt    the CA, when the issuer sent one
//
// # Never a half-written or mismatched pair
//
// Before anything is written the key is checked to be the leaf's and the
// chain to be signed in order; a Secret that fails is reported and the
// files on disk stay as they are. <name> is a symlink to a versioned
// directory .<name>.<version> (the version is a hash of the content). A
// new version is written into a temporary directory beside it, each file
// fsynced, the directory fsynced and renamed, and then a new symlink is
// renamed over <name> and the namespace directory fsynced. So whenever the
// process dies, <name> names a complete version: the old one until the
// rename, the new one after. The previous version is kept until the next
// switch, so a reader that resolved <name> just before a switch still finds
// both of its files.
//
// A reader that resolves <name> once (opens the directory and reads both
// files from it, or runs after the switch as the reload hook does) always
// gets a matching pair. A reader that opens <name>/tls.crt and, later,
// <name>/tls.key by path could straddle a switch that falls between its
// two opens; no layout of two files avoids that for such a reader, which is
// why the hook runs after the switch and why tls.pem (one file, replaced as
// a unit) exists. nginx checks the pair when it loads them and keeps its
// old configuration if they differ; the hook's reload then loads the new
// pair.
//
// # Batches, the hook, restarts
//
// Changes are written in batches: Config.Debounce after the last change
// (at most ten Debounce intervals after the first), and then Config.Exec
// runs once, bounded by Config.ExecTimeout (its process group is killed
// when that expires). A failed write or hook is logged, counted and tried
// again at the next change or after Config.RetryInterval; the last good
// files stay. A version already on disk is not rewritten, so a restart,
// or a NATS outage the connection recovers from, costs reads only, and
// the hook runs only if something changed. A Certificate deleted from the
// store (or no longer selected) keeps its files unless Config.Prune.
//
// # What the agent may do in NATS
//
// It reads and never writes: STREAM.INFO of KV_ACMEQ_CERTIFICATES and
// KV_ACMEQ_SECRETS, CONSUMER.CREATE and CONSUMER.DELETE of its ordered
// consumers on those two streams, their flow-control replies ($JS.FC),
// DIRECT.GET on KV_ACMEQ_SECRETS (for a Certificate selected after the
// start) and a subscription to _INBOX.>. The README lists the exact
// permissions; TestSyncLeastPrivilege proves them against a real server.
package delivery
