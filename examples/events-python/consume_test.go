// Package events tests the Python example consumer of acmeq's certificate
// notifications (consume.py) against a real nats-server.
package events

import (
	"bufio"
	"context"
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/internal/bus"
	"github.com/acmeq/acmeq/internal/stack"
	"github.com/acmeq/acmeq/messages"
)

// python3 finds the interpreter or fails the test saying how to install it.
func python3(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 not found in PATH: install it (Debian/Ubuntu: apt-get install -y python3)")
	}
	return p
}

// run starts consume.py with args and returns its stdout lines once it
// exits; it publishes through publish after the script has subscribed.
func run(t *testing.T, url string, publish func(), args ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python3(t), append([]string{"consume.py", "--server", url}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout := &strings.Builder{}
	cmd.Stdout = stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	subscribed := false
	var errLines []string
	for sc.Scan() {
		errLines = append(errLines, sc.Text())
		if strings.Contains(sc.Text(), "subscribed to acmeq.events.certificate.>") {
			subscribed = true
			break
		}
	}
	if !subscribed {
		_ = cmd.Wait()
		t.Fatalf("consume.py did not subscribe: %v", errLines)
	}
	go func() {
		for sc.Scan() {
			t.Log("consume.py:", sc.Text())
		}
	}()
	publish()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("consume.py: %v (stdout %q)", err, stdout.String())
	}
	return strings.Split(strings.TrimSpace(stdout.String()), "\n")
}

// Events recorded the way the workers record them reach the Python
// consumer, which prints only the reasons asked for, in order.
func TestPythonConsumer(t *testing.T) {
	t.Parallel()
	n, err := stack.StartNATS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Shutdown)
	nc, err := nats.Connect(n.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	if err := bus.EnsureStreams(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	b := bus.New(js, "test-worker")
	cert := func(ns, name string) messages.Object {
		return &messages.Certificate{Metadata: messages.ObjectMeta{Namespace: ns, Name: name}}
	}
	record := func(obj messages.Object, typ messages.EventType, reason, msg string) {
		if err := b.Record(ctx, obj, typ, reason, msg); err != nil {
			t.Fatal(err)
		}
	}
	publish := func() {
		record(cert("default", "shop"), messages.EventNormal, messages.ReasonIssuing, "Issuing certificate as Secret does not exist")
		record(&messages.Order{Metadata: messages.ObjectMeta{Namespace: "default", Name: "shop-1-123"}}, messages.EventNormal, messages.ReasonIssued, "not a Certificate")
		record(cert("default", "shop"), messages.EventNormal, messages.ReasonIssued, "The certificate has been successfully issued")
		record(cert("team-a", "api"), messages.EventWarning, messages.ReasonFailed, "The certificate request has failed to complete and will be retried: boom")
		record(cert("team-a", "api"), messages.EventNormal, messages.ReasonIssued, "The certificate has been successfully issued")
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}

	lines := run(t, n.URL, publish, "--count", "2")
	if len(lines) != 2 || !strings.HasSuffix(lines[0], " Issued default/shop: The certificate has been successfully issued (Normal)") ||
		!strings.HasSuffix(lines[1], " Issued team-a/api: The certificate has been successfully issued (Normal)") {
		t.Errorf("consume.py printed %q", lines)
	}

	lines = run(t, n.URL, publish, "--count", "3", "--reason", "Issued,Failed", "--json")
	var got []string
	for _, l := range lines {
		var ev messages.Event
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("--json printed %q: %v", l, err)
		}
		if ev.Source != messages.EventSource || ev.Reporter != "test-worker" || ev.FirstTimestamp.IsZero() {
			t.Errorf("event lost fields: %+v", ev)
		}
		got = append(got, ev.Reason+" "+ev.InvolvedObject.Namespace+"/"+ev.InvolvedObject.Name)
	}
	if want := []string{"Issued default/shop", "Failed team-a/api", "Issued team-a/api"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("--json --reason Issued,Failed printed %v, want %v", got, want)
	}
}

// An unreachable server is a clear error and a non-zero exit.
func TestPythonConsumerNoServer(t *testing.T) {
	t.Parallel()
	port, err := stack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(python3(t), "consume.py", "--server", "nats://127.0.0.1:"+strconv.Itoa(port)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "cannot subscribe to acmeq.events.certificate.>") {
		t.Errorf("no server: %v, %s", err, out)
	}
}
