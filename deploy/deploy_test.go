package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/acmeq/acmeq/internal/connect"
	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/producer"
	"github.com/acmeq/acmeq/solvers/http01"
	"github.com/acmeq/acmeq/worker"
)

// maxDrain bounds how long `acmeq worker` takes to drain on SIGTERM
// (cmd/acmeq/worker.go stops within 25 s). Every way of stopping a worker
// here must wait longer before killing it.
const maxDrain = 30 * time.Second

// placeholder starts the values a user must fill in (never a shipped key or
// password): acmeq refuses them at start, naming the variable.
const placeholder = "REPLACE"

// readmeVars reads the configuration tables of the main README: every
// `ACMEQ_*` in the first column, with its default (a row may list several
// variables and their defaults, comma-separated).
func readmeVars(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	def := 2 // the column of the defaults, from the table's header
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "|")
		if len(cols) > 3 && strings.TrimSpace(cols[1]) == "variable" {
			for i, c := range cols {
				if strings.TrimSpace(c) == "default" {
					def = i
				}
			}
			continue
		}
		if len(cols) <= def+1 || !strings.Contains(cols[1], "`ACMEQ_") {
			continue
		}
		names := strings.Split(cols[1], ",")
		defs := strings.Split(cols[def], ",")
		for i, n := range names {
			n = strings.Trim(strings.TrimSpace(n), "`")
			d := ""
			if len(defs) == len(names) {
				d = strings.Trim(strings.TrimSpace(defs[i]), "`")
			} else if len(names) == 1 {
				d = strings.Trim(strings.TrimSpace(cols[def]), "`")
			}
			vars[n] = d
		}
	}
	if len(vars) < 20 {
		t.Fatalf("found %d ACMEQ_ variables in README.md's tables; the parser no longer matches the README", len(vars))
	}
	return vars
}

// checkValue reports whether value is valid for the variable name, whose
// README default is def. The kind comes from the name (URLs, paths, the
// secret key) or else from the default (a duration, an integer, a
// boolean, a listen address).
func checkValue(name, def, value string) error {
	if strings.HasPrefix(value, placeholder) {
		if !secretVar(name) {
			return fmt.Errorf("a %s placeholder in a variable that is not a secret", placeholder)
		}
		return nil
	}
	switch {
	case name == "ACMEQ_SECRET_KEY":
		_, err := store.ParseSecretKey(value)
		return err
	case name == "ACMEQ_NATS_URL":
		return connect.NATSConfig{URL: value}.Validate()
	case name == "ACMEQ_REDIS_URL":
		return connect.RedisConfig{URL: value}.Validate()
	case name == "ACMEQ_REPLICAS":
		n, err := strconv.Atoi(value)
		if err != nil {
			return fmt.Errorf("want 1 to 5: %w", err)
		}
		if n < 1 || n > 5 {
			return fmt.Errorf("want 1 to 5, not %d", n)
		}
		return nil
	case name == "ACMEQ_LOG_FORMAT":
		if value != "json" && value != "text" {
			return fmt.Errorf("want json or text")
		}
		return nil
	case name == "ACMEQ_LOG_LEVEL":
		if !slices.Contains([]string{"debug", "info", "warn", "error"}, value) {
			return fmt.Errorf("want debug, info, warn or error")
		}
		return nil
	case name == "ACMEQ_REDIS_SENTINEL_ADDRS":
		for _, a := range strings.Split(value, ",") {
			if _, _, err := net.SplitHostPort(strings.TrimSpace(a)); err != nil {
				return err
			}
		}
		return nil
	case pathVar(name):
		if !filepath.IsAbs(value) && !strings.HasPrefix(value, "%d/") {
			return fmt.Errorf("want an absolute path")
		}
		return nil
	}
	if _, err := strconv.Atoi(def); err == nil {
		_, err := strconv.Atoi(value)
		return err
	}
	if d, err := time.ParseDuration(def); err == nil && d > 0 {
		v, err := time.ParseDuration(value)
		if err == nil && v <= 0 {
			err = fmt.Errorf("want a positive duration")
		}
		return err
	}
	if def == "true" || def == "false" {
		_, err := strconv.ParseBool(value)
		return err
	}
	if strings.HasPrefix(def, ":") {
		_, port, err := net.SplitHostPort(value)
		if err == nil {
			_, err = strconv.ParseUint(port, 10, 16)
		}
		return err
	}
	if value == "" {
		return fmt.Errorf("empty")
	}
	return nil
}

func secretVar(name string) bool {
	return name == "ACMEQ_SECRET_KEY" || strings.HasSuffix(name, "_PASSWORD") || strings.HasSuffix(name, "_TOKEN")
}

func pathVar(name string) bool {
	for _, s := range []string{"_CREDS", "_NKEY", "_TLS_CA", "_TLS_CERT", "_TLS_KEY"} {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// setting is one ACMEQ_* variable set by a deploy file.
type setting struct{ where, name, value string }

func checkSettings(t *testing.T, settings []setting) {
	t.Helper()
	vars := readmeVars(t)
	if len(settings) == 0 {
		t.Fatal("no ACMEQ_ variable found")
	}
	for _, s := range settings {
		def, ok := vars[s.name]
		if !ok {
			t.Errorf("%s sets %s, which README.md's configuration tables do not list", s.where, s.name)
			continue
		}
		if err := checkValue(s.name, def, s.value); err != nil {
			t.Errorf("%s: %s=%q: %v", s.where, s.name, s.value, err)
		}
	}
}

func readYAMLDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var docs []map[string]any
	for _, part := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		var doc map[string]any
		if err := yaml.Unmarshal([]byte(part), &doc); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
	return docs
}

// get walks a decoded YAML document: get(doc, "spec", "template", 0, ...).
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func port(t *testing.T, listen string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(listen)
	if err != nil {
		t.Fatalf("listen address %q: %v", listen, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("listen address %q: %v", listen, err)
	}
	return n
}

// interpolate resolves compose's ${VAR:-default} to its default; a
// variable without a default would be empty in a fresh checkout.
func interpolate(t *testing.T, where, s string) string {
	t.Helper()
	return regexp.MustCompile(`\$\{([A-Z0-9_]+)(:-([^}]*))?\}`).ReplaceAllStringFunc(s, func(m string) string {
		sub := regexp.MustCompile(`\$\{([A-Z0-9_]+)(:-([^}]*))?\}`).FindStringSubmatch(m)
		if sub[2] == "" {
			t.Errorf("%s: ${%s} has no default: a fresh checkout would run with it empty", where, sub[1])
		}
		return sub[3]
	})
}

func TestCompose(t *testing.T) {
	docs := readYAMLDocs(t, "compose.yaml")
	services, _ := get(docs[0], "services").(map[string]any)
	if services == nil {
		t.Fatal("compose.yaml: no services")
	}
	var settings []setting
	var natsServices []string
	acmeq := map[string]map[string]string{} // service -> environment
	image := ""
	for name, svc := range services {
		if strings.HasPrefix(str(get(svc, "image")), "docker.io/library/nats:") {
			natsServices = append(natsServices, name)
			args := fmt.Sprint(get(svc, "command"))
			if !strings.Contains(args, "-js") || !strings.Contains(args, "--routes") {
				t.Errorf("service %s: nats-server without JetStream or routes: %s", name, args)
			}
			continue
		}
		if str(get(svc, "build", "dockerfile")) != "deploy/Dockerfile" {
			continue
		}
		if image == "" {
			image = str(get(svc, "image"))
		} else if str(get(svc, "image")) != image {
			t.Errorf("service %s runs image %q, others %q: one image for every role", name, get(svc, "image"), image)
		}
		if str(get(svc, "build", "context")) != ".." {
			t.Errorf("service %s builds from %q, want the repository root (..)", name, get(svc, "build", "context"))
		}
		if g, err := time.ParseDuration(str(get(svc, "stop_grace_period"))); err != nil || g <= maxDrain {
			t.Errorf("service %s: stop_grace_period %v must exceed the drain (%s)", name, get(svc, "stop_grace_period"), maxDrain)
		}
		env := map[string]string{}
		for k, v := range get(svc, "environment").(map[string]any) {
			env[k] = interpolate(t, "compose.yaml "+name, str(v))
			if strings.HasPrefix(k, "ACMEQ_") {
				settings = append(settings, setting{"compose.yaml service " + name, k, env[k]})
			}
		}
		acmeq[name] = env
	}
	checkSettings(t, settings)
	sort.Strings(natsServices)
	if len(natsServices) != 3 {
		t.Fatalf("compose.yaml: %d nats services, want a cluster of 3", len(natsServices))
	}
	for _, name := range natsServices {
		args := fmt.Sprint(get(services[name], "command"))
		for _, peer := range natsServices {
			if !strings.Contains(args, "nats-route://"+peer+":6222") {
				t.Errorf("nats service %s does not route to %s", name, peer)
			}
		}
	}
	roles := map[string]int{}
	for name, env := range acmeq {
		if env["ACMEQ_REPLICAS"] != strconv.Itoa(len(natsServices)) {
			t.Errorf("service %s: ACMEQ_REPLICAS=%q on a cluster of %d", name, env["ACMEQ_REPLICAS"], len(natsServices))
		}
		for _, n := range natsServices {
			if !strings.Contains(env["ACMEQ_NATS_URL"], "nats://"+n+":4222") {
				t.Errorf("service %s: ACMEQ_NATS_URL %q does not list %s", name, env["ACMEQ_NATS_URL"], n)
			}
		}
		cmd, _ := get(services[name], "command").([]any)
		if len(cmd) == 0 {
			t.Errorf("service %s has no command", name)
			continue
		}
		roles[str(cmd[0])]++
		switch str(cmd[0]) {
		case "worker":
			if ports, _ := get(services[name], "ports").([]any); len(ports) > 0 && !strings.HasSuffix(str(ports[0]), ":"+strconv.Itoa(port(t, env["ACMEQ_LISTEN"]))) {
				t.Errorf("service %s publishes %v, but listens on %s", name, ports, env["ACMEQ_LISTEN"])
			}
		case "http01":
			listen := port(t, env["ACMEQ_HTTP01_LISTEN"])
			if p := str(get(services[name], "ports", 0)); !strings.HasSuffix(p, ":"+strconv.Itoa(listen)) {
				t.Errorf("http01 publishes %q, but serves on %d", p, listen)
			}
			var pc struct {
				Pebble struct {
					ListenAddress string
					HTTPPort      int
				}
			}
			b, err := os.ReadFile(filepath.Join("compose", "pebble-config.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &pc); err != nil {
				t.Fatal(err)
			}
			if pc.Pebble.HTTPPort != listen {
				t.Errorf("Pebble validates HTTP-01 on port %d, the responder serves on %d", pc.Pebble.HTTPPort, listen)
			}
			checkDevManifests(t, services, name, pc.Pebble.ListenAddress)
		}
	}
	if roles["worker"] != 2 || roles["http01"] != 1 || roles["apply"] != 1 {
		t.Errorf("compose.yaml runs %v, want 2 workers, 1 http01 and 1 apply", roles)
	}
	for _, name := range []string{"pebble", "apply"} {
		if p := fmt.Sprint(get(services[name], "profiles")); p != "[dev]" {
			t.Errorf("service %s: profiles %s, want [dev]", name, p)
		}
	}
	if img := str(get(services["pebble"], "image")); !strings.HasPrefix(img, "ghcr.io/letsencrypt/pebble:") {
		t.Errorf("pebble image %q, want ghcr.io/letsencrypt/pebble", img)
	}
}

// checkDevManifests decodes and validates compose/dev.yaml as acmeq apply
// does, and checks that Pebble can reach its names: each is a network
// alias of the responder, and the Issuer points at the Pebble service.
func checkDevManifests(t *testing.T, services map[string]any, responder, pebbleListen string) {
	t.Helper()
	f, err := os.Open(filepath.Join("compose", "dev.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	objs, err := producer.Decode(f)
	if err != nil {
		t.Fatalf("compose/dev.yaml: %v", err)
	}
	aliases := fmt.Sprint(get(services[responder], "networks", "default", "aliases"))
	var iss *messages.Issuer
	var certs []*messages.Certificate
	for _, o := range objs {
		producer.SetDefaults(o)
		switch r := o.(type) {
		case *messages.Issuer:
			iss = r
		case *messages.Certificate:
			certs = append(certs, r)
		}
	}
	if iss == nil || len(certs) == 0 {
		t.Fatalf("compose/dev.yaml: want an Issuer and a Certificate, got %d objects", len(objs))
	}
	if err := producer.ValidateIssuer(iss); err != nil {
		t.Errorf("compose/dev.yaml: %v", err)
	}
	if want := "https://pebble:" + strconv.Itoa(port(t, pebbleListen)) + "/dir"; iss.Spec.ACME.Server != want {
		t.Errorf("issuer server %q, want %q (the pebble service)", iss.Spec.ACME.Server, want)
	}
	for _, c := range certs {
		if err := producer.ValidateCertificate(c, iss); err != nil {
			t.Errorf("compose/dev.yaml: %v", err)
		}
		for _, n := range c.Spec.DNSNames {
			if !strings.Contains(aliases, n) {
				t.Errorf("certificate %s: %s is not an alias of the %s service (%s): Pebble could not reach it", c.Metadata.Name, n, responder, aliases)
			}
		}
	}
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var froms, users, entry, exposes []string
	var build string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, f[1])
		case "USER":
			users = append(users, f[1])
		case "ENTRYPOINT":
			entry = append(entry, strings.Join(f[1:], " "))
		case "EXPOSE":
			exposes = append(exposes, f[1:]...)
		case "RUN":
			if strings.Contains(l, `"build"`) {
				build = l
			}
		}
	}
	if len(froms) < 2 {
		t.Fatalf("FROM %v: want a multi-stage build", froms)
	}
	if last := froms[len(froms)-1]; last != "scratch" && !strings.HasPrefix(last, "gcr.io/distroless/static") {
		t.Errorf("final image FROM %s, want scratch or distroless static", last)
	}
	if !strings.Contains(string(b), "ENV CGO_ENABLED=0") {
		t.Error("the build does not set CGO_ENABLED=0: the binary must be static")
	}
	if build == "" || strings.Contains(build, "-tags") {
		t.Errorf("go build line %q: want one, without build tags (no dev)", build)
	}
	if len(users) == 0 || users[len(users)-1] == "0" || strings.HasPrefix(users[len(users)-1], "root") || strings.HasPrefix(users[len(users)-1], "0:") {
		t.Errorf("USER %v: the image must not run as root", users)
	}
	if len(entry) != 1 || entry[0] != `["/acmeq"]` {
		t.Errorf("ENTRYPOINT %v, want [\"/acmeq\"]", entry)
	}
	for _, p := range []string{"9402", "9403", "80"} {
		if !slices.Contains(exposes, p) {
			t.Errorf("EXPOSE %v lacks %s", exposes, p)
		}
	}
}

// kube reads every manifest of kubernetes/ (not the Helm values), by
// kind/name.
func kube(t *testing.T) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	files, err := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		base := filepath.Base(f)
		if base == "nats-values.yaml" || base == "kustomization.yaml" {
			continue
		}
		for _, d := range readYAMLDocs(t, f) {
			key := str(d["kind"]) + "/" + str(get(d, "metadata", "name"))
			if _, dup := out[key]; dup {
				t.Errorf("%s defined twice", key)
			}
			d["_file"] = base
			out[key] = d
		}
	}
	return out
}

func TestKubernetes(t *testing.T) {
	objs := kube(t)
	var settings []setting
	cm := map[string]string{}
	for key, o := range objs {
		switch str(o["kind"]) {
		case "ConfigMap":
			for k, v := range get(o, "data").(map[string]any) {
				cm[k] = str(v)
				settings = append(settings, setting{key, k, str(v)})
			}
		case "Secret":
			for k, v := range get(o, "stringData").(map[string]any) {
				settings = append(settings, setting{key, k, str(v)})
			}
		}
	}
	image := ""
	for _, name := range []string{"acmeq-worker", "acmeq-http01"} {
		d := objs["Deployment/"+name]
		if d == nil {
			t.Fatalf("no Deployment %s", name)
		}
		c := get(d, "spec", "template", "spec", "containers", 0)
		env := map[string]string{}
		for k, v := range cm {
			env[k] = v
		}
		for _, e := range get(c, "env").([]any) {
			n, v := str(get(e, "name")), get(e, "value")
			if v != nil {
				env[n] = str(v)
				settings = append(settings, setting{"Deployment/" + name, n, str(v)})
			}
		}
		if image == "" {
			image = str(get(c, "image"))
		} else if str(get(c, "image")) != image {
			t.Errorf("Deployment %s runs %s, the other %s: one image", name, get(c, "image"), image)
		}
		if get(c, "resources", "requests", "cpu") == nil || get(c, "resources", "requests", "memory") == nil {
			t.Errorf("Deployment %s: no cpu and memory requests", name)
		}
		if get(d, "spec", "template", "spec", "securityContext", "runAsNonRoot") != true {
			t.Errorf("Deployment %s may run as root", name)
		}
		ports := map[string]int{}
		for _, p := range get(c, "ports").([]any) {
			ports[str(get(p, "name"))] = int(get(p, "containerPort").(float64))
		}
		metricsVar := "ACMEQ_LISTEN"
		if name == "acmeq-http01" {
			metricsVar = "ACMEQ_HTTP01_METRICS_LISTEN"
			if ports["http"] != port(t, env["ACMEQ_HTTP01_LISTEN"]) {
				t.Errorf("http01 port %d, but ACMEQ_HTTP01_LISTEN=%s", ports["http"], env["ACMEQ_HTTP01_LISTEN"])
			}
		}
		if ports["metrics"] != port(t, env[metricsVar]) {
			t.Errorf("Deployment %s: metrics port %d, but %s=%s", name, ports["metrics"], metricsVar, env[metricsVar])
		}
		for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
			if p := str(get(c, probe, "httpGet", "path")); p != path {
				t.Errorf("Deployment %s: %s path %q, want %s", name, probe, p, path)
			}
			if p := str(get(c, probe, "httpGet", "port")); p != "metrics" {
				t.Errorf("Deployment %s: %s on port %q, want metrics", name, probe, p)
			}
		}
		labels := fmt.Sprint(get(d, "spec", "template", "metadata", "labels"))
		if sel := fmt.Sprint(get(d, "spec", "selector", "matchLabels")); sel != labels {
			t.Errorf("Deployment %s selects %s, its pods have %s", name, sel, labels)
		}
	}
	checkSettings(t, settings)

	wd := objs["Deployment/acmeq-worker"]
	if g := get(wd, "spec", "template", "spec", "terminationGracePeriodSeconds"); g == nil || time.Duration(g.(float64))*time.Second <= maxDrain {
		t.Errorf("worker terminationGracePeriodSeconds %v must exceed the drain (%s)", g, maxDrain)
	}
	pdb := objs["PodDisruptionBudget/acmeq-worker"]
	if pdb == nil || fmt.Sprint(get(pdb, "spec", "selector", "matchLabels")) != fmt.Sprint(get(wd, "spec", "selector", "matchLabels")) {
		t.Errorf("the PodDisruptionBudget does not select the workers: %v", get(pdb, "spec", "selector"))
	}

	svc := objs["Service/acmeq-http01"]
	if fmt.Sprint(get(svc, "spec", "selector")) != fmt.Sprint(get(objs["Deployment/acmeq-http01"], "spec", "selector", "matchLabels")) {
		t.Errorf("Service acmeq-http01 does not select the responders")
	}
	if tp := str(get(svc, "spec", "ports", 0, "targetPort")); tp != "http" || str(get(svc, "spec", "ports", 0, "port")) != "80" {
		t.Errorf("Service acmeq-http01 maps port %v to %q, want 80 to the container's http port", get(svc, "spec", "ports", 0, "port"), tp)
	}
	ing := objs["Ingress/acmeq-http01"]
	path := get(ing, "spec", "rules", 0, "http", "paths", 0)
	if str(get(path, "path")) != http01.ChallengePath || str(get(path, "pathType")) != "Prefix" {
		t.Errorf("Ingress path %v %v, want Prefix %s", get(path, "pathType"), get(path, "path"), http01.ChallengePath)
	}
	if str(get(path, "backend", "service", "name")) != "acmeq-http01" || str(get(path, "backend", "service", "port", "name")) != str(get(svc, "spec", "ports", 0, "name")) {
		t.Errorf("Ingress backend %v is not the responder's Service", get(path, "backend"))
	}

	so := objs["ScaledObject/acmeq-worker"]
	if str(get(so, "spec", "scaleTargetRef", "name")) != "acmeq-worker" {
		t.Errorf("ScaledObject scales %v, want the worker Deployment", get(so, "spec", "scaleTargetRef"))
	}
	var consumers []string
	for _, tr := range get(so, "spec", "triggers").([]any) {
		if str(get(tr, "type")) != "nats-jetstream" || str(get(tr, "metadata", "stream")) != messages.WorkStream {
			t.Errorf("trigger %v: want nats-jetstream on %s", tr, messages.WorkStream)
		}
		consumers = append(consumers, str(get(tr, "metadata", "consumer")))
	}
	var want []string
	for _, k := range messages.ReconciledKinds {
		want = append(want, worker.ConsumerName(k))
	}
	sort.Strings(consumers)
	sort.Strings(want)
	if !slices.Equal(consumers, want) {
		t.Errorf("ScaledObject watches consumers %v, the workers have %v", consumers, want)
	}

	// NATS from the Helm chart: the cluster the ConfigMap's replicas and
	// the scaler's monitoring endpoint assume.
	values := readYAMLDocs(t, filepath.Join("kubernetes", "nats-values.yaml"))[0]
	if r := str(get(values, "config", "cluster", "replicas")); r != cm["ACMEQ_REPLICAS"] || r != "3" {
		t.Errorf("nats cluster of %s servers, ACMEQ_REPLICAS=%s: want 3 and 3", r, cm["ACMEQ_REPLICAS"])
	}
	if get(values, "config", "jetstream", "enabled") != true || get(values, "config", "jetstream", "fileStore", "enabled") != true {
		t.Error("nats-values.yaml: JetStream with file storage is not enabled")
	}
	mon := str(get(values, "config", "monitor", "port"))
	if ep := str(get(so, "spec", "triggers", 0, "metadata", "natsServerMonitoringEndpoint")); !strings.HasSuffix(ep, ":"+mon) {
		t.Errorf("the scaler reads %s, NATS monitors on port %s", ep, mon)
	}
	users := fmt.Sprint(get(values, "config", "merge", "authorization", "users"))
	for _, role := range []string{"ACMEQ_WORKER", "ACMEQ_HTTP01", "ACMEQ_PRODUCER", "ACMEQ_READER", "ACMEQ_SYNC"} {
		if !strings.Contains(users, "$"+role+" ") {
			t.Errorf("nats-values.yaml has no user with the permissions of %s", role)
		}
	}

	// kubectl apply -k takes every manifest.
	kust := readYAMLDocs(t, filepath.Join("kubernetes", "kustomization.yaml"))[0]
	var listed []string
	for _, r := range get(kust, "resources").([]any) {
		listed = append(listed, str(r))
	}
	files := map[string]bool{}
	for _, o := range objs {
		files[str(o["_file"])] = true
	}
	for f := range files {
		if !slices.Contains(listed, f) {
			t.Errorf("kustomization.yaml does not list %s", f)
		}
	}
}

// unit reads a systemd unit or environment file: its directives, in order,
// without comments.
func unit(t *testing.T, path string) [][2]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][2]string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' || l[0] == ';' || l[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Errorf("%s: %q is not KEY=VALUE", path, l)
			continue
		}
		out = append(out, [2]string{k, v})
	}
	return out
}

func values(u [][2]string, key string) []string {
	var out []string
	for _, kv := range u {
		if kv[0] == key {
			out = append(out, kv[1])
		}
	}
	return out
}

func TestSystemd(t *testing.T) {
	var settings []setting
	for _, kv := range unit(t, filepath.Join("systemd", "acmeq.env")) {
		settings = append(settings, setting{"systemd/acmeq.env", kv[0], kv[1]})
	}
	for _, role := range []string{"worker", "http01", "sync"} {
		file := "acmeq-" + role + ".service"
		u := unit(t, filepath.Join("systemd", file))
		env := map[string]string{}
		for _, e := range values(u, "Environment") {
			k, v, _ := strings.Cut(e, "=")
			env[k] = v
			settings = append(settings, setting{file, k, v})
		}
		for key, want := range map[string]string{
			"DynamicUser": "yes", "ProtectSystem": "strict", "NoNewPrivileges": "yes", "ProtectHome": "yes",
			"PrivateTmp": "yes", "EnvironmentFile": "/etc/acmeq/acmeq.env", "KillSignal": "SIGTERM",
		} {
			if got := values(u, key); len(got) != 1 || got[0] != want {
				t.Errorf("%s: %s=%v, want %s", file, key, got, want)
			}
		}
		if exec := values(u, "ExecStart"); len(exec) != 1 || !strings.HasPrefix(exec[0], "/usr/local/bin/acmeq "+role) {
			t.Errorf("%s: ExecStart %v, want /usr/local/bin/acmeq %s", file, exec, role)
		}
		state := values(u, "StateDirectory")
		if len(state) != 1 || state[0] != "acmeq-"+role {
			t.Errorf("%s: StateDirectory %v, want acmeq-%s", file, state, role)
		}
		caps := values(u, "CapabilityBoundingSet")
		ambient := values(u, "AmbientCapabilities")
		if role == "http01" {
			listen := port(t, env["ACMEQ_HTTP01_LISTEN"])
			if listen >= 1024 || !slices.Equal(caps, []string{"CAP_NET_BIND_SERVICE"}) || !slices.Equal(ambient, []string{"CAP_NET_BIND_SERVICE"}) {
				t.Errorf("%s: serves on %d with capabilities %v/%v, want port 80 with CAP_NET_BIND_SERVICE only", file, listen, caps, ambient)
			}
		} else if !slices.Equal(caps, []string{""}) {
			t.Errorf("%s: CapabilityBoundingSet %v, want none", file, caps)
		}
		if role == "worker" {
			if d, err := time.ParseDuration(values(u, "TimeoutStopSec")[0]); err != nil || d <= maxDrain {
				t.Errorf("%s: TimeoutStopSec %v must exceed the drain (%s)", file, values(u, "TimeoutStopSec"), maxDrain)
			}
		}
		if role == "sync" {
			exec := values(u, "ExecStart")[0]
			if !strings.Contains(exec, "--dir /var/lib/acmeq-sync ") {
				t.Errorf("%s: %q does not write into its StateDirectory /var/lib/acmeq-sync", file, exec)
			}
			path := values(unit(t, filepath.Join("systemd", "acmeq-sync-reload.path")), "PathChanged")
			if len(path) != 1 || !strings.Contains(exec, path[0]) {
				t.Errorf("acmeq-sync-reload.path watches %v, which the sync hook (%s) does not touch", path, exec)
			}
		}
	}
	checkSettings(t, settings)
}

// The README checker itself: it accepts what the code accepts and refuses
// the rest, so a pass means something.
func TestCheckValue(t *testing.T) {
	vars := readmeVars(t)
	for _, tc := range []struct {
		name, value string
		ok          bool
	}{
		{"ACMEQ_ACK_WAIT", "60s", true},
		{"ACMEQ_ACK_WAIT", "60", false},
		{"ACMEQ_CONCURRENCY", "16", true},
		{"ACMEQ_CONCURRENCY", "many", false},
		{"ACMEQ_SCHEDULER_AUDIT", "maybe", false},
		{"ACMEQ_LISTEN", ":9402", true},
		{"ACMEQ_LISTEN", "9402", false},
		{"ACMEQ_NATS_URL", "nats://a:4222,nats://b:4222", true},
		{"ACMEQ_NATS_URL", "http://a:4222", false},
		{"ACMEQ_REDIS_URL", "redis+sentinel://s1:26379,s2:26379/acmeq/0", true},
		{"ACMEQ_REDIS_URL", "redis:/x", false},
		{"ACMEQ_SECRET_KEY", "ZGV2LW9ubHktc2VjcmV0LWtleS1jaGFuZ2UtbWUtISE=", true},
		{"ACMEQ_SECRET_KEY", "c2hvcnQ=", false},
		{"ACMEQ_SECRET_KEY", placeholder + " me", true},
		{"ACMEQ_REPLICAS", "7", false},
		{"ACMEQ_NATS_TLS_CA", "ca.pem", false},
		{"ACMEQ_LOG_LEVEL", "loud", false},
		{"ACMEQ_CONCURRENCY", placeholder, false},
	} {
		err := checkValue(tc.name, vars[tc.name], tc.value)
		if (err == nil) != tc.ok {
			t.Errorf("checkValue(%s=%q) = %v, want ok=%v", tc.name, tc.value, err, tc.ok)
		}
	}
}
