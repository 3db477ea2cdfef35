package connect

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Defaults of NATSConfig.
const (
	// NATSURLDefault is a local nats-server.
	NATSURLDefault = "nats://127.0.0.1:4222"
	// NATSConnectTimeoutDefault bounds each dial and handshake.
	NATSConnectTimeoutDefault = 5 * time.Second
	// NATSReconnectWaitDefault is the pause between reconnect attempts
	// once connected (nats.go's own default is 2 s).
	NATSReconnectWaitDefault = 500 * time.Millisecond
)

// NATSConfig configures a NATS connection. At most one way to
// authenticate may be set: Creds, NKey, User and Password, Token, or
// credentials in the URL (nats://user:password@host, nats://token@host).
type NATSConfig struct {
	// URL is one server or a comma-separated list (nats://, tls://, ws://
	// or wss://); a client fails over between them and to the servers the
	// cluster announces. tls:// requires TLS. Defaults to NATSURLDefault.
	URL string `env:"ACMEQ_NATS_URL"`
	// Creds is the path of a .creds file (a user JWT and its NKey seed,
	// from `nsc generate creds`), for servers in operator (JWT) mode. It is
	// read again at every reconnect, so it can be rotated in place.
	// Defaults to none.
	Creds string `env:"ACMEQ_NATS_CREDS"`
	// NKey is the path of a file holding a user NKey seed (SU...).
	// Defaults to none.
	NKey string `env:"ACMEQ_NATS_NKEY"`
	// User and Password authenticate with a user of the server's
	// authorization block. Defaults to none.
	User     string `env:"ACMEQ_NATS_USER"`
	Password string `env:"ACMEQ_NATS_PASSWORD"`
	// Token authenticates with the server's authorization token. Defaults
	// to none.
	Token string `env:"ACMEQ_NATS_TOKEN"`
	// TLSCA is the path of a PEM file of the CA(s) that sign the servers'
	// certificates; setting it (or TLSCert) turns TLS on. Defaults to the
	// system's roots.
	TLSCA string `env:"ACMEQ_NATS_TLS_CA"`
	// TLSCert and TLSKey are the paths of a PEM client certificate and its
	// key, for servers that verify clients (mutual TLS). Defaults to none.
	TLSCert string `env:"ACMEQ_NATS_TLS_CERT"`
	TLSKey  string `env:"ACMEQ_NATS_TLS_KEY"`
	// TLSServerName overrides the name checked in the servers'
	// certificates. Defaults to the host of the URL.
	TLSServerName string `env:"ACMEQ_NATS_TLS_SERVER_NAME"`
	// ConnectTimeout bounds each dial and handshake. Defaults to
	// NATSConnectTimeoutDefault.
	ConnectTimeout time.Duration `env:"ACMEQ_NATS_CONNECT_TIMEOUT"`
}

func (c NATSConfig) withDefaults() NATSConfig {
	if c.URL == "" {
		c.URL = NATSURLDefault
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = NATSConnectTimeoutDefault
	}
	return c
}

func (c NATSConfig) tlsFiles() tlsFiles {
	return tlsFiles{ca: c.TLSCA, cert: c.TLSCert, key: c.TLSKey, serverName: c.TLSServerName,
		vars: [4]string{"ACMEQ_NATS_TLS_CA", "ACMEQ_NATS_TLS_CERT", "ACMEQ_NATS_TLS_KEY", "ACMEQ_NATS_TLS_SERVER_NAME"}}
}

// authVar names the variables of the way c authenticates ("" for none).
func (c NATSConfig) authVar() string {
	var set []string
	if c.Creds != "" {
		set = append(set, "ACMEQ_NATS_CREDS")
	}
	if c.NKey != "" {
		set = append(set, "ACMEQ_NATS_NKEY")
	}
	if c.User != "" || c.Password != "" {
		set = append(set, "ACMEQ_NATS_USER/ACMEQ_NATS_PASSWORD")
	}
	if c.Token != "" {
		set = append(set, "ACMEQ_NATS_TOKEN")
	}
	return strings.Join(set, ", ")
}

// Validate checks the configuration without connecting: the URLs parse,
// one way to authenticate at most, and every file it names is readable
// and holds what it should (a JWT and a seed, a user seed, PEM
// certificates and keys).
func (c NATSConfig) Validate() error {
	c = c.withDefaults()
	urlAuth, err := checkNATSURLs(c.URL)
	if err != nil {
		return err
	}
	auth := c.authVar()
	if strings.Contains(auth, ",") {
		return configErr(auth, "set one way to authenticate, not several")
	}
	if urlAuth && auth != "" {
		return configErr("ACMEQ_NATS_URL", "holds credentials and %s is set too: use one", auth)
	}
	if (c.User == "") != (c.Password == "") {
		return configErr("ACMEQ_NATS_USER/ACMEQ_NATS_PASSWORD", "set both or neither")
	}
	if c.Creds != "" {
		if err := checkNATSCreds(c.Creds); err != nil {
			return err
		}
	}
	if c.NKey != "" {
		if err := checkNATSNKey(c.NKey); err != nil {
			return err
		}
	}
	if c.tlsFiles().set() {
		if _, err := c.tlsFiles().config(); err != nil {
			return err
		}
	}
	return nil
}

// checkNATSURLs checks ACMEQ_NATS_URL, comma-separated URLs, and reports
// whether one holds credentials.
func checkNATSURLs(urls string) (urlAuth bool, err error) {
	for _, raw := range strings.Split(urls, ",") {
		raw = strings.TrimSpace(raw)
		full := raw
		if !strings.Contains(raw, "://") {
			// nats.go reads HOST:PORT as nats://HOST:PORT.
			full = "nats://" + raw
		}
		u, err := url.Parse(full)
		if err != nil {
			return false, configErr("ACMEQ_NATS_URL", "%q is not a URL", redactURL(raw))
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return false, configErr("ACMEQ_NATS_URL", "%q: want nats://, tls://, ws:// or wss:// URLs, comma-separated", raw)
		}
		if u.Host == "" {
			return false, configErr("ACMEQ_NATS_URL", "%q has no host", raw)
		}
		urlAuth = urlAuth || u.User != nil
	}
	return urlAuth, nil
}

// checkNATSCreds checks that the credentials file (ACMEQ_NATS_CREDS) holds
// a user JWT and a user NKey seed.
func checkNATSCreds(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return &ConfigError{Var: "ACMEQ_NATS_CREDS", Err: err}
	}
	tok, err := nkeys.ParseDecoratedJWT(b)
	if err == nil {
		_, err = jwt.DecodeUserClaims(tok)
	}
	if err != nil {
		return configErr("ACMEQ_NATS_CREDS", "%s holds no user JWT: %w", path, err)
	}
	kp, err := nkeys.ParseDecoratedUserNKey(b)
	if err != nil {
		return configErr("ACMEQ_NATS_CREDS", "%s holds no user NKey seed: %w", path, err)
	}
	kp.Wipe()
	return nil
}

// checkNATSNKey checks that the NKey file (ACMEQ_NATS_NKEY) holds a user
// NKey seed.
func checkNATSNKey(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return &ConfigError{Var: "ACMEQ_NATS_NKEY", Err: err}
	}
	kp, err := nkeys.ParseDecoratedUserNKey(b)
	if err != nil {
		return configErr("ACMEQ_NATS_NKEY", "%s holds no user NKey seed (SU...): %w", path, err)
	}
	kp.Wipe()
	return nil
}

// Connect validates the configuration and connects, naming the connection
// name (it shows in the server's monitoring); extra options (handlers)
// come after acmeq's and may override them. The first connection is
// tried once per server, each bounded by ConnectTimeout; once connected,
// the client reconnects for ever. A refused credential or a certificate
// that does not verify is a *ConfigError naming the variables.
func (c NATSConfig) Connect(name string, extra ...nats.Option) (*nats.Conn, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	opts := []nats.Option{
		nats.Name(name),
		nats.Timeout(c.ConnectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(NATSReconnectWaitDefault),
	}
	switch {
	case c.Creds != "":
		opts = append(opts, nats.UserCredentials(c.Creds))
	case c.NKey != "":
		o, err := nats.NkeyOptionFromSeed(c.NKey)
		if err != nil {
			return nil, &ConfigError{Var: "ACMEQ_NATS_NKEY", Err: err}
		}
		opts = append(opts, o)
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	case c.Token != "":
		opts = append(opts, nats.Token(c.Token))
	}
	tf := c.tlsFiles()
	if tf.set() {
		cfg, err := tf.config()
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(cfg))
	}
	nc, err := nats.Connect(c.URL, append(opts, extra...)...)
	if err != nil {
		return nil, c.explain(err)
	}
	return nc, nil
}

// explain turns a failed first connection into an error naming what to
// fix: the credentials, the TLS files or the URL.
func (c NATSConfig) explain(err error) error {
	auth := c.authVar()
	if auth == "" {
		auth = "ACMEQ_NATS_URL"
	}
	switch {
	case errors.Is(err, nats.ErrAuthorization):
		return configErr(auth, "the NATS server refused the credentials: %w", err)
	case errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked), errors.Is(err, nats.ErrAccountAuthExpired):
		return configErr(auth, "the NATS server refused the credentials: %w", err)
	case errors.Is(err, nats.ErrSecureConnRequired):
		return configErr("ACMEQ_NATS_URL", "the NATS server requires TLS: use a tls:// URL or set ACMEQ_NATS_TLS_CA: %w", err)
	case errors.Is(err, nats.ErrSecureConnWanted):
		return configErr("ACMEQ_NATS_URL", "TLS was asked for but the NATS server does not offer it: %w", err)
	}
	if v := verifyError(err, c.tlsFiles()); v != nil {
		return v
	}
	return fmt.Errorf("connect: connect to NATS at %s (ACMEQ_NATS_URL): %w", redactURL(c.URL), err)
}

// redactURL hides passwords and tokens in URLs for error messages.
func redactURL(urls string) string {
	parts := strings.Split(urls, ",")
	for i, raw := range parts {
		if u, err := url.Parse(strings.TrimSpace(raw)); err == nil && u.User != nil {
			u.User = url.User("redacted")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}
