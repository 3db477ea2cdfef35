package webhook

import (
	"crypto/hmac"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/acmeq/acmeq/solvers/dns01"
)

// Limits of [Handler].
const (
	// MaxSkew is how far a request's TimestampHeader may be from the
	// handler's clock.
	MaxSkew = 5 * time.Minute
	// maxRequestBody bounds the body a Handler reads.
	maxRequestBody = 64 << 10
)

// Handler is the receiving side of the contract: an http.Handler serving
// POST /present and POST /cleanup (below any prefix it is mounted at) that
// checks the bearer token and the HMAC signature it is configured with and
// calls Provider. A service written in Go bridges a DNS API by
// implementing [dns01.RecordProvider] for it and serving a Handler.
//
// It answers 204 on success, 401 for a missing or wrong token or
// signature, 400 for a body that is not a valid [Request], 404 for another
// path, 405 for another method, and 502 with the provider's error when the
// provider fails.
type Handler struct {
	// Provider adds and removes the records. Required.
	Provider dns01.RecordProvider
	// BearerToken, when set, must be sent as "Authorization: Bearer ...".
	BearerToken string
	// HMACKey, when set, must have signed the request.
	HMACKey []byte
	// Now is the clock timestamps are checked against. Defaults to
	// time.Now.
	Now func() time.Time
}

var _ http.Handler = (*Handler)(nil)

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var present bool
	switch {
	case strings.HasSuffix(r.URL.Path, "/present"):
		present = true
	case strings.HasSuffix(r.URL.Path, "/cleanup"):
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
	if err != nil || len(body) > maxRequestBody {
		http.Error(w, "cannot read the body", http.StatusBadRequest)
		return
	}
	if why := h.authenticate(r, body); why != "" {
		http.Error(w, why, http.StatusUnauthorized)
		return
	}
	var req Request
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if req.FQDN == "" || req.Value == "" {
		http.Error(w, "body: fqdn and value are required", http.StatusBadRequest)
		return
	}
	rec := dns01.Record{FQDN: req.FQDN, Value: req.Value, DNSName: req.DNSName, Wildcard: req.Wildcard}
	if present {
		err = h.Provider.PresentRecord(r.Context(), rec)
	} else {
		err = h.Provider.CleanUpRecord(r.Context(), rec)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// authenticate says why r is not authenticated, or "".
func (h *Handler) authenticate(r *http.Request, body []byte) string {
	if h.BearerToken != "" {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(h.BearerToken)) != 1 {
			return "missing or wrong bearer token"
		}
	}
	if len(h.HMACKey) > 0 {
		ts := r.Header.Get(TimestampHeader)
		sec, err := strconv.ParseInt(ts, 10, 64)
		if err != nil {
			return "missing or malformed " + TimestampHeader
		}
		now := time.Now
		if h.Now != nil {
			now = h.Now
		}
		if d := now().Sub(time.Unix(sec, 0)); d > MaxSkew || d < -MaxSkew {
			return fmt.Sprintf("%s is %s away from the receiver's clock", TimestampHeader, d.Truncate(time.Second))
		}
		if !hmac.Equal([]byte(r.Header.Get(SignatureHeader)), []byte(Sign(h.HMACKey, ts, body))) {
			return "missing or wrong " + SignatureHeader
		}
	}
	return ""
}
