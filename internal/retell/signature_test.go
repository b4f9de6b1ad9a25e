package retell_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/retell"
)

// signatureErrors are the only errors VerifySignature may return.
var signatureErrors = []error{
	retell.ErrSignatureMissing,
	retell.ErrSignatureMalformed,
	retell.ErrSignatureExpired,
	retell.ErrSignatureMismatch,
}

func TestVerifySignatureVectors(t *testing.T) {
	var file struct {
		Vectors []struct {
			Name          string `json:"name"`
			APIKey        string `json:"api_key"`
			BodyBase64    string `json:"body_base64"`
			BodySHA256    string `json:"body_sha256"`
			TimestampMS   int64  `json:"timestamp_ms"`
			Signature     string `json:"signature"`
			VerifyAt      int64  `json:"sdk_verify_result_at"`
			ExpectedValid bool   `json:"expected_valid"`
		} `json:"vectors"`
	}
	if err := json.Unmarshal(readFixture(t, "signature-vectors.json"), &file); err != nil {
		t.Fatalf("decode vectors: %v", err)
	}
	if len(file.Vectors) == 0 {
		t.Fatal("no vectors in signature-vectors.json")
	}

	for _, v := range file.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			body, err := base64.StdEncoding.DecodeString(v.BodyBase64)
			if err != nil {
				t.Fatalf("decode body_base64: %v", err)
			}
			if sum := sha256.Sum256(body); hex.EncodeToString(sum[:]) != v.BodySHA256 {
				t.Fatalf("body sha256=%x, want %s", sum, v.BodySHA256)
			}

			// api_key is the key to verify with; for wrong_key_invalid it
			// differs from the key that signed.
			ts, err := retell.VerifySignature(body, v.Signature, v.APIKey, time.UnixMilli(v.VerifyAt))
			if valid := err == nil; valid != v.ExpectedValid {
				t.Fatalf("valid=%v (err %v), want %v", valid, err, v.ExpectedValid)
			}
			if err != nil && !isSignatureError(err) {
				t.Fatalf("err=%v, want one of the signature errors", err)
			}
			if err == nil && ts != v.TimestampMS {
				t.Fatalf("timestamp=%d, want %d", ts, v.TimestampMS)
			}
		})
	}
}

func isSignatureError(err error) bool {
	for _, target := range signatureErrors {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

func TestVerifySignatureWebhookFixtures(t *testing.T) {
	var file struct {
		Signatures []struct {
			File      string `json:"file"`
			APIKey    string `json:"api_key"`
			Header    string `json:"x_retell_signature"`
			BodySHA   string `json:"body_sha256"`
			Timestamp int64  `json:"timestamp_ms"`
			VerifyAt  int64  `json:"sdk_verify_result_at"`
			Valid     bool   `json:"sdk_verify_result"`
		} `json:"signatures"`
	}
	if err := json.Unmarshal(readFixture(t, "webhook-signatures.json"), &file); err != nil {
		t.Fatalf("decode webhook-signatures.json: %v", err)
	}
	if len(file.Signatures) == 0 {
		t.Fatal("no signatures in webhook-signatures.json")
	}

	for _, s := range file.Signatures {
		t.Run(s.File, func(t *testing.T) {
			body := readFixture(t, s.File)
			if sum := sha256.Sum256(body); hex.EncodeToString(sum[:]) != s.BodySHA {
				t.Fatalf("body sha256=%x, want %s", sum, s.BodySHA)
			}

			ts, err := retell.VerifySignature(body, s.Header, s.APIKey, time.UnixMilli(s.VerifyAt))
			if valid := err == nil; valid != s.Valid {
				t.Fatalf("valid=%v (err %v), want %v", valid, err, s.Valid)
			}
			if ts != s.Timestamp {
				t.Fatalf("timestamp=%d, want %d", ts, s.Timestamp)
			}

			if got := retell.Sign(body, s.APIKey, time.UnixMilli(s.Timestamp)); got != s.Header {
				t.Fatalf("Sign=%q, want %q", got, s.Header)
			}
		})
	}
}

func TestSignSDKUnitVector(t *testing.T) {
	const want = "v=1700000000000,d=07024cabe7dd8f6d1c6e4a8324ca92c812e6ad4a7ee506c04f7e462e3321823e"
	got := retell.Sign([]byte(`{"event":"call_ended"}`), "test-api-key", time.UnixMilli(1700000000000))
	if got != want {
		t.Fatalf("Sign=%q, want %q", got, want)
	}
}

func TestSignRoundTrip(t *testing.T) {
	bodies := []string{"", `{"event":"call_started"}`, "{\"x\":\"Jos\u00e9\"}\n"}
	now := time.UnixMilli(1781000000123)

	for _, body := range bodies {
		header := retell.Sign([]byte(body), "key_round_trip", now)
		ts, err := retell.VerifySignature([]byte(body), header, "key_round_trip", now)
		if err != nil {
			t.Fatalf("body %q: VerifySignature: %v", body, err)
		}
		if ts != now.UnixMilli() {
			t.Fatalf("body %q: timestamp=%d, want %d", body, ts, now.UnixMilli())
		}

		// A changed body and a changed key must both fail.
		if _, err := retell.VerifySignature([]byte(body+" "), header, "key_round_trip", now); !errors.Is(err, retell.ErrSignatureMismatch) {
			t.Fatalf("body %q changed: err=%v, want ErrSignatureMismatch", body, err)
		}
		if _, err := retell.VerifySignature([]byte(body), header, "key_other", now); !errors.Is(err, retell.ErrSignatureMismatch) {
			t.Fatalf("body %q other key: err=%v, want ErrSignatureMismatch", body, err)
		}
	}
}

func TestParseSignatureErrors(t *testing.T) {
	digest := strings.Repeat("ab", sha256.Size)
	tests := []struct {
		header string
		want   error
	}{
		{"", retell.ErrSignatureMissing},
		{"v=,d=" + digest, retell.ErrSignatureMalformed},
		{"v=12a,d=" + digest, retell.ErrSignatureMalformed},
		{"v=9007199254740992,d=" + digest, retell.ErrSignatureMalformed},
		{"v=1,d=" + digest[:62] + "zz", retell.ErrSignatureMalformed},
		{"v=1;d=" + digest, retell.ErrSignatureMalformed},
		{"v=1,d=" + digest + "00", retell.ErrSignatureMalformed},
	}
	for i, tt := range tests {
		if _, _, err := retell.ParseSignature(tt.header); !errors.Is(err, tt.want) {
			t.Fatalf("case %d %q: err=%v, want %v", i, tt.header, err, tt.want)
		}
	}

	ts, _, err := retell.ParseSignature("v=9007199254740991,d=" + digest)
	if err != nil || ts != 9007199254740991 {
		t.Fatalf("max safe integer: ts=%d err=%v, want 9007199254740991 and nil", ts, err)
	}
}
