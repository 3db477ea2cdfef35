package http01

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/acmeq/acmeq/internal/stack/stacktest"
	"github.com/acmeq/acmeq/solvers"
)

func TestValidateToken(t *testing.T) {
	tests := []struct {
		name    string
		token   string
		wantErr string // "" for a valid token
	}{
		{"lets encrypt style", "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA", ""},
		{"whole alphabet", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", ""},
		{"one character", "a", ""},
		{"maximum length", strings.Repeat("a", MaxTokenLength), ""},
		{"empty", "", `http01: invalid token "": empty`},
		{"too long", strings.Repeat("a", MaxTokenLength+1),
			`http01: invalid token "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"...: 257 bytes long, more than the maximum of 256`},
		{"padding", "abc=", `http01: invalid token "abc=": character '=' at offset 3 is not in the base64url alphabet`},
		{"standard base64 plus", "a+b", `http01: invalid token "a+b": character '+' at offset 1 is not in the base64url alphabet`},
		{"slash", "a/b", `http01: invalid token "a/b": character '/' at offset 1 is not in the base64url alphabet`},
		{"dot", "a.b", `http01: invalid token "a.b": character '.' at offset 1 is not in the base64url alphabet`},
		{"dot dot", "..", `http01: invalid token "..": character '.' at offset 0 is not in the base64url alphabet`},
		{"NATS wildcard", "*", `http01: invalid token "*": character '*' at offset 0 is not in the base64url alphabet`},
		{"NATS tail wildcard", ">", `http01: invalid token ">": character '>' at offset 0 is not in the base64url alphabet`},
		{"space", "a b", `http01: invalid token "a b": character ' ' at offset 1 is not in the base64url alphabet`},
		{"newline", "a\n", `http01: invalid token "a\n": character '\n' at offset 1 is not in the base64url alphabet`},
		{"non-ASCII", "aé", `http01: invalid token "aé": character 'é' at offset 1 is not in the base64url alphabet`},
		{"invalid UTF-8", "a\xff", `http01: invalid token "a\xff": character "\xff" at offset 1 is not in the base64url alphabet`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateToken(tt.token)
			if valid := validToken(tt.token); valid != (err == nil) {
				t.Errorf("validToken = %v, but ValidateToken returned %v", valid, err)
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateToken: %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateToken = nil, want %s", tt.wantErr)
			}
			if !errors.Is(err, ErrInvalidToken) {
				t.Errorf("error %v does not wrap ErrInvalidToken", err)
			}
			if err.Error() != tt.wantErr {
				t.Errorf("error\n got: %s\nwant: %s", err, tt.wantErr)
			}
		})
	}
}

func TestPresenterRejectsInvalidChallenges(t *testing.T) {
	p := NewPresenter(connect(t, setup(t)))
	valid := solvers.Challenge{DNSName: "example.com", Type: solvers.TypeHTTP01, Token: "tok", Key: "tok.thumb"}
	tests := []struct {
		name   string
		modify func(*solvers.Challenge)
		want   error // nil: any error that is neither sentinel
	}{
		{"invalid token", func(c *solvers.Challenge) { c.Token = "../etc" }, ErrInvalidToken},
		{"empty token", func(c *solvers.Challenge) { c.Token = "" }, ErrInvalidToken},
		{"DNS-01", func(c *solvers.Challenge) { c.Type = solvers.TypeDNS01 }, ErrUnsupportedChallenge},
		{"wildcard", func(c *solvers.Challenge) { c.Wildcard = true }, ErrUnsupportedChallenge},
		{"empty key", func(c *solvers.Challenge) { c.Key = "" }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := valid
			tt.modify(&ch)
			err := p.Present(t.Context(), ch)
			if err == nil {
				t.Fatal("Present succeeded, want error")
			}
			if !strings.HasPrefix(err.Error(), "http01: ") {
				t.Errorf("error %q lacks the http01: prefix", err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error %v does not wrap %v", err, tt.want)
			}
		})
	}
	t.Run("CleanUp invalid token", func(t *testing.T) {
		ch := valid
		ch.Token = "a.b"
		if err := p.CleanUp(t.Context(), ch); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("CleanUp = %v, want ErrInvalidToken", err)
		}
	})
	t.Run("lower-case type", func(t *testing.T) {
		ch := valid
		ch.Type = "http-01"
		if err := p.Present(t.Context(), ch); err != nil {
			t.Fatalf("Present: %v", err)
		}
	})
}

func TestPresentIsServedByResponderOnAnotherConnection(t *testing.T) {
	url := setup(t)
	worker := NewPresenter(connect(t, url))    // a worker: no responder
	resp := startResponder(t, connect(t, url)) // the responder: a different connection
	ts := serve(t, resp)

	ch := solvers.Challenge{
		DNSName: "example.com",
		Type:    solvers.TypeHTTP01,
		Token:   "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA",
		Key:     "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI",
	}
	challengeURL := ts.URL + ChallengePath + ch.Token

	if code, _, _ := get(t, "GET", challengeURL); code != 404 {
		t.Fatalf("before Present: status %d, want 404", code)
	}
	if err := worker.Present(t.Context(), ch); err != nil {
		t.Fatalf("Present: %v", err)
	}
	if err := worker.Present(t.Context(), ch); err != nil {
		t.Fatalf("Present again: %v", err)
	}
	eventually(t, 5*time.Second, func() bool {
		code, _, _ := get(t, "GET", challengeURL)
		return code == 200
	})
	code, h, body := get(t, "GET", challengeURL)
	if code != 200 || body != ch.Key {
		t.Fatalf("GET: %d %q, want 200 %q", code, body, ch.Key)
	}
	if ct := h.Get("Content-Type"); ct != "text/plain" {
		t.Errorf("Content-Type = %q, want text/plain", ct)
	}
	code, h, body = get(t, "HEAD", challengeURL)
	if code != 200 || body != "" {
		t.Errorf("HEAD: %d %q, want 200 and no body", code, body)
	}
	if cl := h.Get("Content-Length"); cl != "87" {
		t.Errorf("HEAD Content-Length = %q, want 87", cl)
	}

	if err := worker.CleanUp(t.Context(), ch); err != nil {
		t.Fatalf("CleanUp: %v", err)
	}
	eventually(t, 5*time.Second, func() bool {
		code, _, _ := get(t, "GET", challengeURL)
		return code == 404
	})
	if err := worker.CleanUp(t.Context(), ch); err != nil {
		t.Fatalf("CleanUp again: %v", err)
	}
	never := ch
	never.Token = "neverPresented"
	if err := worker.CleanUp(t.Context(), never); err != nil {
		t.Fatalf("CleanUp of a token never presented: %v", err)
	}

	st := resp.Stats()
	if st.Served < 3 || st.NotFound < 2 || st.Tokens != 0 {
		t.Errorf("Stats = %+v, want Served >= 3, NotFound >= 2, Tokens 0", st)
	}
}

func TestEnsureBucket(t *testing.T) {
	js := stacktest.Connect(t, setup(t))

	// An operator-made bucket: memory storage, no TTL.
	if _, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{
		Bucket:  Bucket,
		Storage: jetstream.MemoryStorage,
	}); err != nil {
		t.Fatalf("CreateKeyValue: %v", err)
	}
	for i := range 2 { // EnsureBucket is idempotent
		kv, err := EnsureBucket(t.Context(), js)
		if err != nil {
			t.Fatalf("EnsureBucket #%d: %v", i+1, err)
		}
		st, err := kv.Status(t.Context())
		if err != nil {
			t.Fatalf("Status: %v", err)
		}
		cfg := st.(*jetstream.KeyValueBucketStatus).Config()
		if cfg.Bucket != Bucket || cfg.History != 1 || cfg.TTL != DefaultTokenTTL ||
			cfg.LimitMarkerTTL != expiryMarkerTTL || cfg.Storage != jetstream.MemoryStorage || cfg.Replicas != 1 {
			t.Errorf("EnsureBucket #%d: config %+v", i+1, cfg)
		}
	}
}
