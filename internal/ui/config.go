package ui

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"
)

// Defaults of Config.
const (
	// ListenDefault is loopback only: the view needs no credentials there.
	ListenDefault = "127.0.0.1:9404"
	// ExpiringWithinDefault is how close to its notAfter a certificate
	// counts as expiring.
	ExpiringWithinDefault = 14 * 24 * time.Hour
	// PageSizeDefault is how many certificates a page shows.
	PageSizeDefault = 50
	// PageSizeMax bounds the per parameter: a page is rendered, never the
	// whole fleet.
	PageSizeMax = 500
	// MaxStreamsDefault bounds the live streams (Server-Sent Events) served
	// at once.
	MaxStreamsDefault = 64
	// LiveIntervalDefault is the least time between two "changed"
	// notifications of the certificate list's live stream.
	LiveIntervalDefault = time.Second
	// RecentEventsDefault is how many of the latest events the events page
	// shows before live ones arrive.
	RecentEventsDefault = 100
	// minTokenLength keeps a bearer token from being guessable.
	minTokenLength = 16
)

// Config configures the fleet view. The zero value serves on loopback
// without credentials.
type Config struct {
	// Listen is the address Run serves on (`acmeq ui --listen`). An address
	// that is not loopback (":9404", "0.0.0.0:9404", a host name) requires
	// Token or BasicAuth. Defaults to ListenDefault.
	Listen string
	// Token, when set, is a bearer token every request must carry
	// ("Authorization: Bearer TOKEN", or the cookie the login form sets),
	// at least 16 characters (ACMEQ_UI_TOKEN). Defaults to none.
	Token string
	// BasicAuth, when set, is "user:password" for HTTP basic auth
	// (ACMEQ_UI_BASIC_AUTH); with Token, either is accepted. Defaults to
	// none.
	BasicAuth string
	// TLSCertFile and TLSKeyFile, both or neither, make Run serve HTTPS
	// (`--tls-cert`, `--tls-key`). Defaults to plain HTTP.
	TLSCertFile, TLSKeyFile string
	// ExpiringWithin is how close to its notAfter a certificate counts as
	// expiring (`--expiring-within`). Defaults to ExpiringWithinDefault.
	ExpiringWithin time.Duration
	// PageSize is the default number of certificates per page (the per
	// parameter can ask for up to PageSizeMax). Defaults to
	// PageSizeDefault.
	PageSize int
	// MaxStreams bounds the live streams served at once; one more is
	// answered 503 and the browser's EventSource retries. Defaults to
	// MaxStreamsDefault.
	MaxStreams int
	// LiveInterval is the least time between two notifications of the
	// certificate list's live stream. Defaults to LiveIntervalDefault.
	LiveInterval time.Duration
	// RecentEvents is how many of the latest events the events page shows
	// at first. Defaults to RecentEventsDefault.
	RecentEvents int
	// Logger receives request errors. Defaults to discarding.
	Logger *slog.Logger
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
}

// ErrCredentialsRequired: Listen is not loopback and neither Token nor
// BasicAuth is set.
var ErrCredentialsRequired = errors.New("ui: a bearer token or basic auth is required to listen beyond loopback")

func (c *Config) defaults() {
	if c.Listen == "" {
		c.Listen = ListenDefault
	}
	if c.ExpiringWithin == 0 {
		c.ExpiringWithin = ExpiringWithinDefault
	}
	if c.PageSize == 0 {
		c.PageSize = PageSizeDefault
	}
	if c.MaxStreams == 0 {
		c.MaxStreams = MaxStreamsDefault
	}
	if c.LiveInterval == 0 {
		c.LiveInterval = LiveIntervalDefault
	}
	if c.RecentEvents == 0 {
		c.RecentEvents = RecentEventsDefault
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate checks the configuration (after defaults), naming the field at
// fault and its flag or environment variable.
func (c Config) Validate() error {
	c.defaults()
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("ui: Listen (--listen) %q is not host:port: %w", c.Listen, err)
	}
	if port == "" {
		return fmt.Errorf("ui: Listen (--listen) %q has no port", c.Listen)
	}
	if c.Token != "" && len(c.Token) < minTokenLength {
		return fmt.Errorf("ui: Token (ACMEQ_UI_TOKEN) must be at least %d characters, got %d", minTokenLength, len(c.Token))
	}
	if c.BasicAuth != "" {
		user, pass, ok := strings.Cut(c.BasicAuth, ":")
		if !ok || user == "" || pass == "" {
			return errors.New("ui: BasicAuth (ACMEQ_UI_BASIC_AUTH) must be user:password, both non-empty")
		}
	}
	if !IsLoopback(host) && c.Token == "" && c.BasicAuth == "" {
		return fmt.Errorf("%w: Listen (--listen) %q is not a loopback address; set Token (ACMEQ_UI_TOKEN) or BasicAuth (ACMEQ_UI_BASIC_AUTH), or listen on 127.0.0.1", ErrCredentialsRequired, c.Listen)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("ui: TLSCertFile (--tls-cert) and TLSKeyFile (--tls-key) go together")
	}
	if c.ExpiringWithin < 0 {
		return fmt.Errorf("ui: ExpiringWithin (--expiring-within) must not be negative, got %s", c.ExpiringWithin)
	}
	if c.PageSize < 1 || c.PageSize > PageSizeMax {
		return fmt.Errorf("ui: PageSize (--page-size) must be 1 to %d, got %d", PageSizeMax, c.PageSize)
	}
	if c.MaxStreams < 1 {
		return fmt.Errorf("ui: MaxStreams must be at least 1, got %d", c.MaxStreams)
	}
	if c.LiveInterval < 0 || c.RecentEvents < 0 {
		return errors.New("ui: LiveInterval and RecentEvents must not be negative")
	}
	return nil
}

// IsLoopback reports whether a listen host is loopback only: "localhost"
// or a loopback IP. An empty host (all interfaces), an unspecified address
// and any other name are not.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
