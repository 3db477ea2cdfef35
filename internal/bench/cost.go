package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/acmeq/acmeq/messages"
)

// The cost budget of one certificate of two names, end to end, events
// included (the design's).
const (
	BudgetMessages   = 20 // JetStream messages: work transitions + events
	BudgetKVWrites   = 25
	BudgetRedisCalls = 10
)

const (
	// quietStable is how long every stream must stay unchanged, with no
	// work message left, for the stack to count as quiet.
	quietStable = 500 * time.Millisecond
	// quietMax bounds the wait for quiet.
	quietMax = 15 * time.Second
	// idleWindow is how long the quiet stack is watched to estimate the
	// Redis calls the workers' tick loops make by themselves.
	idleWindow = 2 * time.Second
	// kvStreamPrefix prefixes the stream behind every JetStream KV bucket.
	kvStreamPrefix = "KV_"
)

// Cost is what a run cost acmeq in total, from just before the first
// request to the moment the fleet was quiet again after the last Ready
// (trailing clean-ups and events included).
type Cost struct {
	// Certificates the cost is divided by (those issued).
	Certificates int
	// WorkMessages were published to ACMEQ_WORK (transitions, after
	// deduplication), Events to ACMEQ_EVENTS, DeadLetters to ACMEQ_DEAD.
	WorkMessages, Events, DeadLetters uint64
	// KVWrites are the messages written to every KV bucket's stream (puts,
	// creates, updates, deletes, purges), by bucket in KVByBucket.
	KVWrites   uint64
	KVByBucket map[string]uint64
	// RedisCalls are the commands Redis received from clients (MONITOR): a
	// Lua script counts once, a pipeline once per command. RedisByCommand
	// splits them by command. Zero with RedisMonitorErr set if MONITOR
	// failed.
	RedisCalls      uint64
	RedisByCommand  map[string]uint64
	RedisMonitorErr error
	// RedisIdleCalls estimates how many of RedisCalls the workers' tick
	// loops (reap, grant, resync turn) made by themselves over the run:
	// the rate measured on the quiet stack afterwards times the run's
	// duration.
	RedisIdleCalls float64
	// RedisCommands is INFO commandstats' calls (bench's own INFO and ECHO
	// excluded), which also counts every command run inside a Lua script.
	RedisCommands uint64
	// NATSMsgsIn is every message the NATS server received (varz in_msgs):
	// publishes, KV reads and writes, acks, pull requests, API calls.
	NATSMsgsIn int64
	// WorkByKind splits the transitions published (before JetStream's
	// deduplication, so it may sum to more than WorkMessages) by
	// "kind/action"; EventsByReason splits events by "Kind/Reason".
	WorkByKind, EventsByReason map[string]uint64
	// NotQuiet is set when the stack was still busy quietMax after the last
	// Ready: the counts then include whatever it was still doing.
	NotQuiet bool
	// Instrumented: WorkByKind, EventsByReason and the Redis calls by
	// clients (RedisCalls, RedisByCommand, RedisIdleCalls) were counted,
	// at some CPU cost to nats-server and redis-server. Otherwise only
	// the passive counters are set.
	Instrumented bool
}

// Messages are the JetStream messages of the budget: work transitions,
// events and dead letters.
func (c *Cost) Messages() uint64 { return c.WorkMessages + c.Events + c.DeadLetters }

// Per divides v by the number of certificates.
func (c *Cost) Per(v float64) float64 {
	if c == nil || c.Certificates == 0 {
		return 0
	}
	return v / float64(c.Certificates)
}

// meter counts what the stack does between start and finish. Passive
// counters (stream sequences, INFO commandstats, varz) cost the stack
// almost nothing; an instrumented meter also subscribes to every
// transition and event and runs MONITOR on Redis, which costs nats-server
// and redis-server CPU: its runs are for the breakdown, not for CPU.
type meter struct {
	js         jetstream.JetStream
	inMsgs     func(context.Context) (int64, error)
	rdb        *redis.Client
	instrument bool
	mon        *monitor
	monErr     error

	sub      *subjectCounter
	streams0 map[string]uint64
	cmds0    map[string]uint64
	varz0    int64
	started  time.Time
}

// startMeter waits for the fleet to be quiet (the issuer's set-up done)
// and takes the first snapshot; instrumented, it starts counting subjects
// and Redis calls.
func startMeter(ctx context.Context, f *fleet, instrument bool) (*meter, error) {
	m := &meter{js: f.js, inMsgs: f.nats.InMsgs, rdb: f.rdb, instrument: instrument}
	var err error
	if m.streams0, _, err = m.quiet(ctx); err != nil {
		return nil, err
	}
	if instrument {
		if m.sub, err = startSubjectCounter(f.nc); err != nil {
			return nil, err
		}
		m.mon, m.monErr = startMonitor(f.redis.Addr)
		if m.mon != nil {
			// With the script cache empty, each script's first EVALSHA falls
			// back to EVAL with its source (go-redis does), which names the
			// script in the breakdown. It costs two calls per script per run.
			if err := f.rdb.ScriptFlush(ctx).Err(); err != nil {
				return nil, fmt.Errorf("bench: redis script flush: %w", err)
			}
			if err := m.mon.mark(ctx, f.rdb, markStart); err != nil {
				m.mon.close()
				m.mon, m.monErr = nil, err
			}
		}
	}
	if m.cmds0, err = commandStats(ctx, f.rdb); err != nil {
		return nil, err
	}
	if m.varz0, err = m.inMsgs(ctx); err != nil {
		return nil, err
	}
	m.started = time.Now()
	return m, nil
}

// close releases the monitor connection and the subscriptions.
func (m *meter) close() {
	m.sub.stop()
	if m.mon != nil {
		m.mon.close()
	}
}

// finish returns the cost over issued certificates, given the stream
// sequences of the quiet fleet after the run (from quiet).
func (m *meter) finish(ctx context.Context, streams1 map[string]uint64, notQuiet bool, issued int) (*Cost, error) {
	busy := time.Since(m.started)
	c := &Cost{Certificates: issued, NotQuiet: notQuiet, KVByBucket: map[string]uint64{}, Instrumented: m.instrument}
	if m.sub != nil {
		var err error
		if c.WorkByKind, c.EventsByReason, err = m.sub.counts(); err != nil {
			return nil, err
		}
	}
	for name, seq := range streams1 {
		d := seq - m.streams0[name]
		switch {
		case name == messages.WorkStream:
			c.WorkMessages = d
		case name == messages.EventStream:
			c.Events = d
		case name == messages.DeadLetterStream:
			c.DeadLetters = d
		case strings.HasPrefix(name, kvStreamPrefix):
			c.KVWrites += d
			if d > 0 {
				c.KVByBucket[strings.TrimPrefix(name, kvStreamPrefix)] = d
			}
		}
	}
	cmds1, err := commandStats(ctx, m.rdb)
	if err != nil {
		return nil, err
	}
	for cmd, n := range cmds1 {
		switch cmd {
		case "info", "echo", "monitor", "script|flush":
			// bench's own.
		default:
			c.RedisCommands += n - m.cmds0[cmd]
		}
	}
	v, err := m.inMsgs(ctx)
	if err != nil {
		return nil, err
	}
	c.NATSMsgsIn = v - m.varz0

	if !m.instrument {
		return c, nil
	}
	if m.mon == nil {
		c.RedisMonitorErr = m.monErr
		return c, nil
	}
	if err := m.mon.mark(ctx, m.rdb, markBusyEnd); err != nil {
		c.RedisMonitorErr = err
		return c, nil
	}
	idleFrom := time.Now()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(idleWindow):
	}
	if err := m.mon.mark(ctx, m.rdb, markIdleEnd); err != nil {
		c.RedisMonitorErr = err
		return c, nil
	}
	busyCalls, idleCalls, byCmd := m.mon.counts()
	c.RedisCalls = busyCalls
	c.RedisByCommand = byCmd
	c.RedisIdleCalls = float64(idleCalls) / time.Since(idleFrom).Seconds() * busy.Seconds()
	return c, nil
}

// quiet waits until no work message is left and no stream changed for
// quietStable (at most quietMax), and returns the last sequence of every
// stream; notQuiet reports the wait ran out.
func (m *meter) quiet(ctx context.Context) (seqs map[string]uint64, notQuiet bool, err error) {
	return waitQuiet(ctx, m.js, quietStable)
}

// waitQuiet waits until no work message is left and no stream changed for
// stable (at most quietMax).
func waitQuiet(ctx context.Context, js jetstream.JetStream, stable time.Duration) (seqs map[string]uint64, notQuiet bool, err error) {
	deadline := time.Now().Add(quietMax)
	poll := min(stable/5, 100*time.Millisecond)
	prev, pending, err := streamSeqs(ctx, js)
	if err != nil {
		return nil, false, err
	}
	since := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case <-time.After(poll):
		}
		cur, p, err := streamSeqs(ctx, js)
		if err != nil {
			return nil, false, err
		}
		if pending > 0 || p > 0 || !maps.Equal(prev, cur) {
			prev, pending, since = cur, p, time.Now()
		} else if time.Since(since) >= stable {
			return cur, false, nil
		}
		if time.Now().After(deadline) {
			return cur, true, nil
		}
	}
}

// streamSeqs returns the last sequence of every stream and the work not
// done yet: what the work consumers have still to deliver or see acked.
// (The work stream's message count would not do: renewal timers wait in
// it as scheduled messages for as long as the certificates are valid.)
func streamSeqs(ctx context.Context, js jetstream.JetStream) (map[string]uint64, uint64, error) {
	out := map[string]uint64{}
	l := js.ListStreams(ctx)
	for info := range l.Info() {
		out[info.Config.Name] = info.State.LastSeq
	}
	if err := l.Err(); err != nil {
		return nil, 0, fmt.Errorf("bench: list streams: %w", err)
	}
	var pending uint64
	if _, ok := out[messages.WorkStream]; ok {
		st, err := js.Stream(ctx, messages.WorkStream)
		if err != nil {
			return nil, 0, fmt.Errorf("bench: work stream: %w", err)
		}
		cl := st.ListConsumers(ctx)
		for ci := range cl.Info() {
			pending += ci.NumPending + uint64(ci.NumAckPending)
		}
		if err := cl.Err(); err != nil {
			return nil, 0, fmt.Errorf("bench: list work consumers: %w", err)
		}
	}
	return out, pending, nil
}

// commandStats returns INFO commandstats' calls by command.
func commandStats(ctx context.Context, rdb *redis.Client) (map[string]uint64, error) {
	s, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("bench: redis info commandstats: %w", err)
	}
	return parseCommandStats(s), nil
}

// subjectCounter counts the transitions and events published, by
// subscribing to their subjects.
type subjectCounter struct {
	nc     *nats.Conn
	subs   []*nats.Subscription
	mu     sync.Mutex
	work   map[string]uint64
	events map[string]uint64
}

func startSubjectCounter(nc *nats.Conn) (*subjectCounter, error) {
	c := &subjectCounter{nc: nc, work: map[string]uint64{}, events: map[string]uint64{}}
	sub, err := nc.Subscribe(messages.WorkSubjectPrefix+".>", func(msg *nats.Msg) {
		key := "malformed"
		if t, err := messages.DecodeTransition(msg.Data); err == nil {
			key = t.Kind.Token() + "/" + string(t.Action)
		}
		c.mu.Lock()
		c.work[key]++
		c.mu.Unlock()
	})
	if err != nil {
		return nil, fmt.Errorf("bench: subscribe to transitions: %w", err)
	}
	c.subs = append(c.subs, sub)
	sub, err = nc.Subscribe(messages.EventSubjectPrefix+".>", func(msg *nats.Msg) {
		var e messages.Event
		key := "malformed"
		if err := json.Unmarshal(msg.Data, &e); err == nil {
			key = string(e.InvolvedObject.Kind) + "/" + e.Reason
		}
		c.mu.Lock()
		c.events[key]++
		c.mu.Unlock()
	})
	if err != nil {
		c.stop()
		return nil, fmt.Errorf("bench: subscribe to events: %w", err)
	}
	c.subs = append(c.subs, sub)
	// The subscriptions must be in place before anything is counted.
	if err := nc.Flush(); err != nil {
		c.stop()
		return nil, fmt.Errorf("bench: subscribe: %w", err)
	}
	return c, nil
}

// counts returns what was received so far (after a round trip, so that
// everything published before the call has arrived).
func (c *subjectCounter) counts() (work, events map[string]uint64, err error) {
	if err := c.nc.Flush(); err != nil {
		return nil, nil, fmt.Errorf("bench: flush: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.work), maps.Clone(c.events), nil
}

func (c *subjectCounter) stop() {
	if c == nil {
		return
	}
	for _, s := range c.subs {
		_ = s.Unsubscribe()
	}
}

// redisCPU returns the CPU time redis-server has used (INFO cpu).
func redisCPU(ctx context.Context, rdb *redis.Client) (time.Duration, error) {
	s, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, fmt.Errorf("bench: redis info cpu: %w", err)
	}
	var total time.Duration
	for line := range strings.Lines(s) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (k != "used_cpu_sys" && k != "used_cpu_user") {
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: redis info cpu: %s: %w", k, err)
		}
		total += time.Duration(f * float64(time.Second))
	}
	return total, nil
}

// parseCommandStats parses lines such as
// "cmdstat_evalsha:calls=12,usec=345,...".
func parseCommandStats(s string) map[string]uint64 {
	out := map[string]uint64{}
	for line := range strings.Lines(s) {
		line = strings.TrimSpace(line)
		rest, ok := strings.CutPrefix(line, "cmdstat_")
		if !ok {
			continue
		}
		name, fields, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		for f := range strings.SplitSeq(fields, ",") {
			if v, ok := strings.CutPrefix(f, "calls="); ok {
				n, _ := strconv.ParseUint(v, 10, 64)
				out[name] = n
			}
		}
	}
	return out
}

// Marks the bench sends through Redis (ECHO) to delimit what MONITOR counts.
const (
	markStart = iota
	markBusyEnd
	markIdleEnd
)

// monitor counts the commands clients send to Redis, by MONITOR on a raw
// connection. Commands run by Lua scripts ("[0 lua]") are not counted:
// the script's EVALSHA is. The phases are delimited by ECHO marks that the
// bench sends; the commands of the connection that sends them (the bench's
// INFO) are not counted either.
type monitor struct {
	conn  net.Conn
	nonce string

	mu      sync.Mutex
	phase   int    // -1 before markStart; then the last mark seen
	self    string // the source of the marks: the bench's own connection
	busy    uint64
	idle    uint64
	byCmd   map[string]uint64
	scripts map[string]string // sha1 -> name, from the EVALs seen
	seen    chan int          // marks as MONITOR shows them
	readErr error
}

func startMonitor(addr string) (*monitor, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("bench: redis monitor: %w", err)
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	m := &monitor{conn: conn, nonce: hex.EncodeToString(b), phase: -1, byCmd: map[string]uint64{}, scripts: map[string]string{}, seen: make(chan int, 3)}
	if _, err := conn.Write([]byte("MONITOR\r\n")); err != nil {
		conn.Close()
		return nil, fmt.Errorf("bench: redis monitor: %w", err)
	}
	rd := bufio.NewReaderSize(conn, 1<<16)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := rd.ReadString('\n')
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("bench: redis monitor: answer %q: %w", line, err)
	}
	if !strings.HasPrefix(line, "+OK") {
		conn.Close()
		return nil, fmt.Errorf("bench: redis monitor: unexpected answer %q", line)
	}
	_ = conn.SetReadDeadline(time.Time{})
	go m.read(rd)
	return m, nil
}

func (m *monitor) read(rd *bufio.Reader) {
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			m.mu.Lock()
			m.readErr = err
			m.mu.Unlock()
			close(m.seen)
			return
		}
		m.line(line)
	}
}

// line counts one MONITOR line:
// +1700000000.123456 [0 127.0.0.1:5555] "evalsha" "abc" "1" "key".
func (m *monitor) line(line string) {
	_, rest, ok := strings.Cut(line, "[")
	if !ok {
		return
	}
	src, rest, ok := strings.Cut(rest, "]")
	if !ok || strings.HasSuffix(src, " lua") {
		return
	}
	args := monitorArgs(rest)
	if len(args) == 0 {
		return
	}
	cmd := strings.ToLower(args[0])
	if cmd == "echo" && len(args) == 2 {
		if mark, ok := strings.CutPrefix(args[1], "acmeq-bench-"+m.nonce+"-"); ok {
			n, err := strconv.Atoi(mark)
			if err == nil {
				m.mu.Lock()
				m.phase = n
				m.self = src
				m.mu.Unlock()
				m.seen <- n
			}
			return
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if src == m.self {
		return // the bench's own connection (INFO, ECHO)
	}
	switch {
	case cmd == "eval" && len(args) > 1:
		// Learn the script's name (the first word of its leading comment)
		// to name its EVALSHA calls.
		sum := sha1.Sum([]byte(args[1]))
		m.scripts[hex.EncodeToString(sum[:])] = scriptName(args[1])
		cmd += " " + scriptName(args[1])
	case cmd == "evalsha" && len(args) > 1:
		cmd += " " + strings.ToLower(args[1])
	}
	switch m.phase {
	case markStart:
		m.busy++
		m.byCmd[cmd]++
	case markBusyEnd:
		m.idle++
	}
}

// monitorArgs splits the quoted, escaped arguments of a MONITOR line
// (Redis' sdscatrepr: \\ \" \n \r \t \a \b \xHH).
func monitorArgs(s string) []string {
	var args []string
	for {
		i := strings.IndexByte(s, '"')
		if i < 0 {
			return args
		}
		s = s[i+1:]
		var b strings.Builder
		for len(s) > 0 && s[0] != '"' {
			c := s[0]
			s = s[1:]
			if c != '\\' || len(s) == 0 {
				b.WriteByte(c)
				continue
			}
			e := s[0]
			s = s[1:]
			switch e {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'a':
				b.WriteByte('\a')
			case 'b':
				b.WriteByte('\b')
			case 'x':
				if len(s) >= 2 {
					if v, err := strconv.ParseUint(s[:2], 16, 8); err == nil {
						b.WriteByte(byte(v))
						s = s[2:]
						continue
					}
				}
				b.WriteByte(e)
			default:
				b.WriteByte(e)
			}
		}
		args = append(args, b.String())
		if len(s) > 0 {
			s = s[1:]
		}
	}
}

// scriptName is the first word of a script's leading "-- " comment, lower
// case ("-- Grant leases ..." -> "grant"), or "script".
func scriptName(src string) string {
	first, _, _ := strings.Cut(strings.TrimSpace(src), "\n")
	if rest, ok := strings.CutPrefix(first, "--"); ok {
		if f := strings.Fields(rest); len(f) > 0 {
			return strings.ToLower(strings.Trim(f[0], ".,:"))
		}
	}
	return "script"
}

// mark sends mark through rdb and waits until MONITOR has shown it, so
// every command before it has been counted in the phase it ends.
func (m *monitor) mark(ctx context.Context, rdb *redis.Client, mark int) error {
	if err := rdb.Echo(ctx, "acmeq-bench-"+m.nonce+"-"+strconv.Itoa(mark)).Err(); err != nil {
		return fmt.Errorf("bench: redis echo: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: redis monitor: mark %d not seen: %w", mark, ctx.Err())
		case got, ok := <-m.seen:
			if !ok {
				m.mu.Lock()
				defer m.mu.Unlock()
				return fmt.Errorf("bench: redis monitor: %w", errors.Join(m.readErr, errors.New("connection closed")))
			}
			if got == mark {
				return nil
			}
		}
	}
}

// counts returns the calls of each phase, and those of the busy phase by
// command, EVALSHA by script name where the script was seen loaded.
func (m *monitor) counts() (busy, idle uint64, byCmd map[string]uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	byCmd = map[string]uint64{}
	for k, v := range m.byCmd {
		if sha, ok := strings.CutPrefix(k, "evalsha "); ok {
			if name, ok := m.scripts[sha]; ok {
				k = "evalsha " + name
			} else {
				k = "evalsha " + sha[:min(len(sha), 8)]
			}
		}
		byCmd[k] += v
	}
	return m.busy, m.idle, byCmd
}

func (m *monitor) close() { _ = m.conn.Close() }
