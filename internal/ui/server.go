package ui

import (
	"bytes"
	"context"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/acmeq/acmeq/internal/store"
	"github.com/acmeq/acmeq/messages"
	"github.com/acmeq/acmeq/scheduler"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Server is the fleet view: an http.Handler serving the pages, the live
// streams and /metrics, and the certificate index behind them.
type Server struct {
	cfg      Config
	js       jetstream.JetStream
	store    *store.Store
	sched    *scheduler.Scheduler
	index    *index
	registry *prometheus.Registry
	pages    map[string]*template.Template
	mux      *http.ServeMux
	// streams is a semaphore on the live streams served at once.
	streams chan struct{}

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns the fleet view over the resources in st (opened read-only is
// enough; it must hold the Certificate bucket), the event and work streams
// of js, and the scheduler sched (nil leaves the scheduler page and
// metrics out). Call Start (or Run) to feed its certificate index.
func New(js jetstream.JetStream, st *store.Store, sched *scheduler.Scheduler, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	if js == nil || st == nil {
		return nil, errors.New("ui: New needs a JetStream context and a store")
	}
	if st.KV(messages.KindCertificate) == nil {
		return nil, fmt.Errorf("ui: the store has no %s bucket (open it with that kind)", messages.KindCertificate.Bucket())
	}
	s := &Server{cfg: cfg, js: js, store: st, sched: sched, index: newIndex(), streams: make(chan struct{}, cfg.MaxStreams)}
	var err error
	if s.pages, err = parsePages(); err != nil {
		return nil, err
	}
	s.registry = newRegistry(s)
	s.routes()
	return s, nil
}

// parsePages parses each page template with the layout.
func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html")
	if err != nil {
		return nil, fmt.Errorf("ui: templates: %w", err)
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" || name == "parts" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, fmt.Errorf("ui: template %s: %w", n, err)
		}
		pages[name] = t
	}
	return pages, nil
}

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/certificates", http.StatusFound)
	})
	m.HandleFunc("GET /certificates", s.handleCertificates)
	m.HandleFunc("GET /live/certificates", s.handleLiveCertificates)
	m.HandleFunc("GET /r/{kind}/{namespace}/{name}", s.handleDescribe)
	m.HandleFunc("GET /issuers", s.handleIssuers)
	m.HandleFunc("GET /scheduler", s.handleScheduler)
	m.HandleFunc("GET /events", s.handleEvents)
	m.HandleFunc("GET /live/events", s.handleLiveEvents)
	m.HandleFunc("GET /metrics", s.serveMetrics)
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	m.HandleFunc("POST /login", s.handleLogin)
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, http.StatusNotFound, "Not found", fmt.Sprintf("There is no page at %s.", r.URL.Path))
	})
	s.mux = m
}

// ServeHTTP serves the fleet view with its security headers, after
// authentication when Token or BasicAuth is set.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	defer func() {
		if v := recover(); v != nil {
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v)
			}
			// The stack goes to the log, never to the browser.
			s.cfg.Logger.Error("ui: panic serving a request", "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			s.fail(w, r, http.StatusInternalServerError, "Internal error", "The fleet view failed to render this page; the error is in its log.")
		}
	}()
	open := r.URL.Path == "/healthz" || strings.HasPrefix(r.URL.Path, "/static/") || (r.URL.Path == "/login" && r.Method == http.MethodPost)
	if !open && !s.authorized(r) {
		s.unauthorized(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// tokenCookie carries the bearer token for browsers (set by the login
// form).
const tokenCookie = "acmeq_ui_token"

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// authorized checks the request's credentials; with neither Token nor
// BasicAuth configured (loopback) everything is.
func (s *Server) authorized(r *http.Request) bool {
	if s.cfg.Token == "" && s.cfg.BasicAuth == "" {
		return true
	}
	if s.cfg.Token != "" {
		if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") && equal(strings.TrimSpace(a[7:]), s.cfg.Token) {
			return true
		}
		if c, err := r.Cookie(tokenCookie); err == nil && equal(c.Value, s.cfg.Token) {
			return true
		}
	}
	if s.cfg.BasicAuth != "" {
		if u, p, ok := r.BasicAuth(); ok {
			wantU, wantP, _ := strings.Cut(s.cfg.BasicAuth, ":")
			// Both compared, whatever the first says.
			uok, pok := equal(u, wantU), equal(p, wantP)
			return uok && pok
		}
	}
	return false
}

func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request) {
	if s.cfg.BasicAuth != "" {
		w.Header().Set("WWW-Authenticate", `Basic realm="acmeq", charset="UTF-8"`)
	} else {
		w.Header().Set("WWW-Authenticate", `Bearer realm="acmeq"`)
	}
	detail := "This fleet view needs credentials: "
	switch {
	case s.cfg.Token != "" && s.cfg.BasicAuth != "":
		detail += "a bearer token (Authorization: Bearer …) or basic auth."
	case s.cfg.Token != "":
		detail += "a bearer token (Authorization: Bearer …), or the token in the form below."
	default:
		detail += "basic auth."
	}
	s.render(w, r, http.StatusUnauthorized, "error", errorPage{Status: http.StatusUnauthorized, Title: "Unauthorized", Detail: detail, Login: s.cfg.Token != ""})
}

// handleLogin takes the token from a form and keeps it in a cookie, so a
// browser can use a token-protected view.
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	tok := r.PostFormValue("token")
	if s.cfg.Token == "" || !equal(tok, s.cfg.Token) {
		s.unauthorized(w, r)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: tok, Path: "/", HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/certificates", http.StatusSeeOther)
}

// errorPage is the data of every error page.
type errorPage struct {
	Status int
	Title  string
	Detail string
	Login  bool
}

// fail renders an error page: a status, a title and what went wrong, never
// a stack trace.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, title, detail string) {
	s.render(w, r, status, "error", errorPage{Status: status, Title: title, Detail: detail})
}

// badParam is a 400 that names the parameter.
func (s *Server) badParam(w http.ResponseWriter, r *http.Request, param, format string, a ...any) {
	s.fail(w, r, http.StatusBadRequest, "Bad request", fmt.Sprintf("Parameter %q: ", param)+fmt.Sprintf(format, a...))
}

// page is what the layout needs besides a page's own data.
type page struct {
	Title   string
	Nav     string
	Now     time.Time
	Partial bool
	Data    any
}

// render executes a page into a buffer first, so a template error becomes
// a clean 500 instead of half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	t := s.pages[name]
	var buf bytes.Buffer
	p := page{Title: titleOf(name, data), Nav: name, Now: s.cfg.Now(), Data: data, Partial: r.URL.Query().Get("partial") == "1"}
	tmpl := "layout.html"
	if p.Partial {
		tmpl = "content"
	}
	if err := t.ExecuteTemplate(&buf, tmpl, p); err != nil {
		s.cfg.Logger.Error("ui: render", "page", name, "err", err)
		if name != "error" {
			s.fail(w, r, http.StatusInternalServerError, "Internal error", "The fleet view failed to render this page; the error is in its log.")
		} else {
			http.Error(w, "internal error", http.StatusInternalServerError)
		}
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

func titleOf(name string, data any) string {
	switch d := data.(type) {
	case errorPage:
		return d.Title
	case *describePage:
		return d.Kind + " " + d.Namespace + "/" + d.Name
	}
	switch name {
	case "certificates":
		return "Certificates"
	case "scheduler":
		return "Scheduler"
	case "events":
		return "Events"
	case "issuers":
		return "Issuers"
	}
	return name
}

// Start feeds the certificate index from a watch on the Certificate bucket
// until Stop. It returns at once: pages say the index is loading until its
// first pass is complete (WaitSynced).
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil {
		return errors.New("ui: already started")
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel, s.done = cancel, make(chan struct{})
	kv := s.store.KV(messages.KindCertificate)
	go func() {
		defer close(s.done)
		s.index.watch(ctx, kv, func(err error) { s.cfg.Logger.Warn("ui: certificate watch restarts", "err", err) })
	}()
	return nil
}

// WaitSynced waits until the index has read every certificate once.
func (s *Server) WaitSynced(ctx context.Context) error {
	for {
		_, synced, _, changed := s.index.status()
		if synced {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ui: certificate index not synced: %w", ctx.Err())
		case <-changed:
		}
	}
}

// Stop ends the index watch.
func (s *Server) Stop() {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.cancel = nil
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// Run starts the index and serves the fleet view on Config.Listen (HTTPS
// with TLSCertFile and TLSKeyFile) until ctx ends; then it shuts the server
// down (live streams end at once) and stops the index.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("ui: listen on %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on a listener of the caller's.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if err := s.Start(ctx); err != nil {
		ln.Close()
		return err
	}
	defer s.Stop()
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          nil,
	}
	errc := make(chan error, 1)
	scheme := "http"
	if s.cfg.TLSCertFile != "" {
		scheme = "https"
	}
	s.cfg.Logger.Info("ui: serving the fleet view", "url", scheme+"://"+ln.Addr().String()+"/")
	go func() {
		if s.cfg.TLSCertFile != "" {
			errc <- srv.ServeTLS(ln, s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("ui: serve: %w", err)
	case <-ctx.Done():
	}
	cancelBase() // ends the live streams, which Shutdown would wait for
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return nil
}
