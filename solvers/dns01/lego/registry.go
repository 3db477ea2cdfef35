package lego

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-acme/lego/v5/challenge"
	"github.com/go-acme/lego/v5/providers/dns/pdns"
)

// registry holds the lego providers acmeq is built with.
//
// To add one, say lego's "exampledns" (providers/dns/exampledns):
//
//  1. import "github.com/go-acme/lego/v5/providers/dns/exampledns" above
//     (one provider package, never lego's providers/dns registry);
//  2. add an entry: Credentials lists the keys of its
//     [Configuration.Credentials] that are secret (they must come from the
//     credentials Secret), Settings every other key it documents in its
//     .toml file, Required the keys it cannot work without;
//  3. write build: start from a zero Config (never the provider's
//     NewDefaultConfig, which reads the process environment), set every
//     field from the Settings getters with lego's documented defaults,
//     and call its NewDNSProviderConfig;
//  4. add a test against its real API, or a fake that speaks its real wire
//     format where the service cannot run on a test machine.
//
// Builds of acmeq that add providers without editing this file call
// [Register] in an init function instead.
var registry = map[string]Registration{
	"pdns": {
		Credentials: []string{"PDNS_API_KEY"},
		Settings: []string{"PDNS_API_URL", "PDNS_SERVER_NAME", "PDNS_API_VERSION", "PDNS_TTL", "PDNS_HTTP_TIMEOUT",
			"PDNS_PROPAGATION_TIMEOUT", "PDNS_POLLING_INTERVAL"},
		Required: []string{"PDNS_API_URL", "PDNS_API_KEY"},
		Build: func(s Settings) (challenge.Provider, error) {
			cfg := &pdns.Config{
				APIKey:     s.String("PDNS_API_KEY", ""),
				ServerName: s.String("PDNS_SERVER_NAME", "localhost"),
			}
			var err error
			if cfg.Host, err = s.URL("PDNS_API_URL"); err != nil {
				return nil, err
			}
			if cfg.APIVersion, err = s.Int("PDNS_API_VERSION", 0); err != nil {
				return nil, err
			}
			if cfg.TTL, err = s.Int("PDNS_TTL", 120); err != nil {
				return nil, err
			}
			timeout, err := s.Seconds("PDNS_HTTP_TIMEOUT", 30*time.Second)
			if err != nil {
				return nil, err
			}
			cfg.HTTPClient = &http.Client{Timeout: timeout}
			// acmeq's self-check does the waiting: lego's propagation
			// settings are accepted and unused.
			return pdns.NewDNSProviderConfig(cfg)
		},
	},
}

// registryMu guards registry against Register at run time.
var registryMu sync.RWMutex

// Registration describes one lego provider to the bridge.
type Registration struct {
	// Credentials are the secret settings: only accepted from the
	// credentials Secret.
	Credentials []string
	// Settings are the other settings, from the solver's config (or the
	// Secret).
	Settings []string
	// Required settings, from either.
	Required []string
	// Build returns the provider configured by s.
	Build func(s Settings) (challenge.Provider, error)
}

// Register adds a provider to the registry under name, replacing any of
// that name. Workers use it from their next attempt on: a challenge whose
// provider was unknown (say, on a fleet where some workers run an older
// build) is retried, not failed.
func Register(name string, r Registration) {
	registryMu.Lock()
	defer registryMu.Unlock()
	registry[name] = r
}

// Unregister removes the provider registered under name, if any: a
// challenge that names it fails to present (and is retried) from its
// next attempt on.
func Unregister(name string) {
	registryMu.Lock()
	defer registryMu.Unlock()
	delete(registry, name)
}

// Lookup returns the registration of name.
func Lookup(name string) (Registration, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	r, ok := registry[name]
	return r, ok
}

// settings merges the solver's settings and credentials after checking
// them.
func (e Registration) settings(provider string, settings, credentials map[string]string) (Settings, error) {
	return e.check(provider, settings, credentials, true)
}

// check validates settings and credentials (checking required keys only
// if required is set) and returns them merged.
func (e Registration) check(provider string, settings, credentials map[string]string, required bool) (Settings, error) {
	merged := Settings{provider: provider, m: map[string]string{}}
	var problems []string
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		switch {
		case slices.Contains(e.Credentials, k):
			problems = append(problems, fmt.Sprintf("%s is a credential: put it in the credentials Secret, not in config", k))
		case !slices.Contains(e.Settings, k):
			problems = append(problems, fmt.Sprintf("unknown setting %s (%s accepts %s)", k, provider, strings.Join(append(slices.Clone(e.Settings), e.Credentials...), ", ")))
		default:
			merged.m[k] = settings[k]
		}
	}
	for _, k := range slices.Sorted(maps.Keys(credentials)) {
		if !slices.Contains(e.Credentials, k) && !slices.Contains(e.Settings, k) {
			// Other keys of the Secret are none of our business.
			continue
		}
		if _, dup := merged.m[k]; dup {
			problems = append(problems, fmt.Sprintf("%s is set both in config and in the credentials Secret", k))
			continue
		}
		merged.m[k] = credentials[k]
	}
	if required {
		for _, k := range e.Required {
			if strings.TrimSpace(merged.m[k]) == "" {
				where := "config"
				if slices.Contains(e.Credentials, k) {
					where = "the credentials Secret"
				}
				problems = append(problems, fmt.Sprintf("%s is required (in %s)", k, where))
			}
		}
	}
	if len(problems) > 0 {
		return Settings{}, fmt.Errorf("%w: %s: %s", ErrConfig, provider, strings.Join(problems, "; "))
	}
	return merged, nil
}

// Settings are a provider's settings by lego's environment variable
// names, with typed getters whose errors name the setting.
type Settings struct {
	provider string
	m        map[string]string
}

// String returns the setting key (trimmed of white space, as a value
// written from a file often ends with a newline), or def when it is unset.
func (s Settings) String(key, def string) string {
	v, ok := s.m[key]
	if !ok {
		return def
	}
	return strings.TrimSpace(v)
}

// Int returns the setting key as an integer, or def when it is unset.
func (s Settings) Int(key string, def int) (int, error) {
	v := s.String(key, "")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %s %q is not an integer", ErrConfig, s.provider, key, v)
	}
	return n, nil
}

// Seconds returns the setting key, a number of seconds as lego's settings
// are, as a duration, or def when it is unset.
func (s Settings) Seconds(key string, def time.Duration) (time.Duration, error) {
	v := s.String(key, "")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: %s: %s %q is not a number of seconds", ErrConfig, s.provider, key, v)
	}
	return time.Duration(n) * time.Second, nil
}

// URL returns the setting key as an absolute http or https URL.
func (s Settings) URL(key string) (*url.URL, error) {
	v := s.String(key, "")
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: %s: %s %q is not an absolute http or https URL", ErrConfig, s.provider, key, v)
	}
	return u, nil
}
