package ui

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
)

// benchFleet is the fleet size the benchmarks measure.
const benchFleet = 100_000

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// encoded returns the fleet as the JSON values of the bucket.
func encoded(b *testing.B, n int) [][]byte {
	b.Helper()
	certs := fleet(n)
	out := make([][]byte, n)
	for i, c := range certs {
		v, err := json.Marshal(c)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = v
	}
	return out
}

// BenchmarkIndex: the memory the index of 100,000 certificates holds, and
// the cost of one update (decode the KV value, build and store its entry),
// as the watch does it.
func BenchmarkIndex(b *testing.B) {
	vals := encoded(b, benchFleet)
	keys := make([]string, len(vals))
	for i, c := range fleet(benchFleet) {
		keys[i] = messages.Key(c.Metadata.Namespace, c.Metadata.Name)
	}
	var ix *index
	before := heapInUse()
	start := time.Now()
	for range b.N {
		ix = newIndex()
		for i, v := range vals {
			c := &messages.Certificate{}
			if err := json.Unmarshal(v, c); err != nil {
				b.Fatal(err)
			}
			ix.put(keys[i], c)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	ix.all() // with the sorted key list, as after the first page
	after := heapInUse()
	runtime.KeepAlive(ix)
	runtime.KeepAlive(vals) // measured before and after: not part of the figure
	b.ReportMetric(float64(after-before)/benchFleet, "heap-bytes/cert")
	b.ReportMetric(float64(after-before)/(1<<20), "heap-MiB")
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N*benchFleet), "ns/update")
}

// countWriter counts bytes.
type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// BenchmarkScrape: writing the per-certificate families of 100,000
// certificates (600,000 samples), plain and gzipped as Prometheus asks.
func BenchmarkScrape(b *testing.B) {
	ix := indexOf(fleet(benchFleet))
	for _, gz := range []bool{false, true} {
		name := "plain"
		if gz {
			name = "gzip"
		}
		b.Run(name, func(b *testing.B) {
			var cw countWriter
			b.ReportAllocs()
			for range b.N {
				cw.n = 0
				var out io.Writer = &cw
				var z *gzip.Writer
				if gz {
					z, _ = gzip.NewWriterLevel(&cw, gzip.BestSpeed)
					out = z
				}
				w := bufio.NewWriterSize(out, 64<<10)
				if err := writeCertificateMetrics(w, ix); err != nil {
					b.Fatal(err)
				}
				_ = w.Flush()
				if z != nil {
					_ = z.Close()
				}
			}
			b.ReportMetric(float64(cw.n)/(1<<20), "MiB/scrape")
		})
	}
}

// BenchmarkListPage: one page of the certificate list over 100,000
// certificates, with a label selector, a state and a search (the filters
// scan the whole index).
func BenchmarkListPage(b *testing.B) {
	ix := indexOf(fleet(benchFleet))
	s := &Server{cfg: Config{}, index: ix}
	s.cfg.defaults()
	var err error
	if s.pages, err = parsePages(); err != nil {
		b.Fatal(err)
	}
	s.routes()
	for _, q := range []string{"", "?state=failing&l=tier%3Dedge&q=customers.example.com&page=3", "?sort=expiry&state=expiring"} {
		b.Run("query="+q, func(b *testing.B) {
			for range b.N {
				rec := httptest.NewRecorder()
				s.handleCertificates(rec, httptest.NewRequest(http.MethodGet, "/certificates"+q, nil))
				if rec.Code != 200 {
					b.Fatalf("%d: %s", rec.Code, rec.Body.String())
				}
			}
		})
	}
}

// BenchmarkIndexSync: the index's first pass over a real Certificate
// bucket of 100,000 certificates in an in-process nats-server.
func BenchmarkIndexSync(b *testing.B) {
	js := stacktest.JetStream(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	st, err := store.Open(ctx, js, nil, store.Config{})
	if err != nil {
		b.Fatal(err)
	}
	kv := st.KV(messages.KindCertificate)
	vals := encoded(b, benchFleet)
	certs := fleet(benchFleet)
	// Filled with asynchronous publishes to the bucket's stream (a KV put
	// is a publish on $KV.<bucket>.<key>), 1,000 in flight at most.
	pending := make([]jetstream.PubAckFuture, 0, 1000)
	for i, c := range certs {
		f, err := js.PublishAsync("$KV."+messages.KindCertificate.Bucket()+"."+messages.Key(c.Metadata.Namespace, c.Metadata.Name), vals[i])
		if err != nil {
			b.Fatal(err)
		}
		pending = append(pending, f)
		if len(pending) == cap(pending) || i == len(certs)-1 {
			for _, f := range pending {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					b.Fatal(err)
				case <-ctx.Done():
					b.Fatal(ctx.Err())
				}
			}
			pending = pending[:0]
		}
	}
	b.ResetTimer()
	for range b.N {
		ix := newIndex()
		wctx, wcancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); ix.watch(wctx, kv, func(error) {}) }()
		for {
			size, synced, _, changed := ix.status()
			if synced {
				if size != benchFleet {
					b.Fatalf("synced with %d certificates", size)
				}
				break
			}
			select {
			case <-changed:
			case <-ctx.Done():
				b.Fatal(ctx.Err())
			}
		}
		wcancel()
		<-done
	}
}
