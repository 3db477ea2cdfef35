package scheduler

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func redisCPU(t *testing.T, rdb *redis.Client) float64 {
	info, _ := rdb.Info(context.Background(), "cpu").Result()
	var sum float64
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "used_cpu_user:") || strings.HasPrefix(line, "used_cpu_sys:") {
			v, _ := strconv.ParseFloat(strings.SplitN(line, ":", 2)[1], 64)
			sum += v
		}
	}
	return sum
}

func TestScratchProfile(t *testing.T) {
	if os.Getenv("SCRATCH") == "" {
		t.Skip()
	}
	src, err := os.ReadFile("/tmp/grant.orig.lua")
	if err != nil {
		t.Fatal(err)
	}
	oldScript := redis.NewScript(string(src))
	rdb, _ := setup(t)
	ctx := context.Background()
	type cfg struct{ size, namespaces int }
	for _, c := range []cfg{{1000, 10}, {10000, 10}, {100000, 10}, {100000, 1000}} {
		size, namespaces := c.size, c.namespaces
		mk := func(i int) Item {
			return item(fmt.Sprintf("ns%d", i%namespaces), fmt.Sprintf("c%07d", i), "HTTP-01", fmt.Sprintf("h%07d.example.com", i), int64(i))
		}
		rdb.FlushDB(ctx)
		s := newSched(t, rdb, Config{Cap: CapDefault, Prefix: "{acmeqbench}:"})
		batch := []Item{}
		for i := range size {
			batch = append(batch, mk(i))
			if len(batch) == 1000 || i == size-1 {
				mustEnqueue(t, ctx, s, batch...)
				batch = batch[:0]
			}
		}
		next := size
		oldGrant := func() string {
			res, err := oldScript.Run(ctx, rdb, s.keys(), "0", s.cfg.Cap, s.cfg.LeaseTTL.Milliseconds(), 1, s.cfg.ScanLimit, s.cfg.Prefix+"q:").Slice()
			if err != nil || len(res) != 4 {
				t.Fatalf("old grant %v %v", res, err)
			}
			return res[1].(string)
		}
		newGrant := func() string { return mustGrant(t, ctx, s, 1)[0].ID }
		rdb.ConfigSet(ctx, "slowlog-log-slower-than", "0")
		rdb.ConfigSet(ctx, "slowlog-max-len", "1000000")
		durs := map[string][]int64{}
		cpu := map[string]float64{}
		for blk := range 16 {
			name, g := "old", oldGrant
			if blk%2 == 1 {
				name, g = "new", newGrant
			}
			rdb.SlowLogReset(ctx)
			c0 := redisCPU(t, rdb)
			for range 400 {
				id := g()
				mustRelease(t, ctx, s, id)
				mustEnqueue(t, ctx, s, mk(next))
				next++
			}
			cpu[name] += redisCPU(t, rdb) - c0
			logs, _ := rdb.SlowLogGet(ctx, -1).Result()
			for _, l := range logs {
				if len(l.Args) >= 5 && strings.EqualFold(l.Args[0], "evalsha") && (l.Args[1] == oldScript.Hash() || l.Args[1] == grantScript.Hash()) {
					durs[name] = append(durs[name], l.Duration.Microseconds())
				}
			}
		}
		for _, name := range []string{"old", "new"} {
			d := durs[name]
			slices.Sort(d)
			t.Logf("size %6d ns %4d %s grant script: n=%d p10 %d µs, median %d µs, p90 %d µs; redis cpu per op (grant+release+enqueue) %.1f µs",
				size, namespaces, name, len(d), d[len(d)/10], d[len(d)/2], d[len(d)*9/10], cpu[name]/(8*400)*1e6)
		}
		rdb.ConfigSet(ctx, "slowlog-log-slower-than", "10000")
	}
}
