package retell_test

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/retell"
)

// signatureForm is the only header shape ParseSignature may accept.
var signatureForm = regexp.MustCompile(`^v=[0-9]+,d=[0-9a-fA-F]{64}$`)

// maxSignatureMS is the largest timestamp a signature header may carry:
// JavaScript's largest safe integer, as in the provider's SDK.
const maxSignatureMS = 1<<53 - 1

// FuzzVerifySignature checks that ParseSignature and VerifySignature never
// panic, accept only headers of the form v=<digits>,d=<64 hex> whose digest
// matches the body, and that a header made by Sign verifies at its own time
// and at the edge of the window, and fails one millisecond past it, for
// another key and for another body.
func FuzzVerifySignature(f *testing.F) {
	body := readFixture(f, "outbound/webhook_1_call_started.json")
	const signedAt = 1781000011483
	f.Add(body, retell.Sign(body, "key_test", time.UnixMilli(signedAt)), "key_test", int64(signedAt))
	f.Add([]byte{}, "", "", int64(0))

	f.Fuzz(func(t *testing.T, body []byte, header, key string, nowMS int64) {
		ts, digest, err := retell.ParseSignature(header)
		switch {
		case err == nil:
			checkParsedHeader(t, header, ts, digest)
		case !errors.Is(err, retell.ErrSignatureMissing) && !errors.Is(err, retell.ErrSignatureMalformed):
			t.Fatalf("ParseSignature(%q) err=%v, want ErrSignatureMissing or ErrSignatureMalformed", header, err)
		}

		now := time.UnixMilli(nowMS)
		got, err := retell.VerifySignature(body, header, key, now)
		if err == nil {
			checkAcceptedHeader(t, body, header, key, now, got)
		} else if !isSignatureError(err) {
			t.Fatalf("VerifySignature err=%v, want one of the signature errors", err)
		}

		checkRoundTrip(t, body, key, nowMS)
	})
}

// checkParsedHeader checks what ParseSignature returned for an accepted
// header against the header's text.
func checkParsedHeader(t *testing.T, header string, ts int64, digest [32]byte) {
	t.Helper()
	if !signatureForm.MatchString(header) {
		t.Fatalf("ParseSignature accepted %q, which is not v=<digits>,d=<64 hex>", header)
	}
	digits, hexDigest, _ := strings.Cut(strings.TrimPrefix(header, "v="), ",d=")
	want, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || want != ts || ts > maxSignatureMS {
		t.Fatalf("ParseSignature(%q) timestamp=%d, want %s (at most %d)", header, ts, digits, int64(maxSignatureMS))
	}
	if got := hex.EncodeToString(digest[:]); got != strings.ToLower(hexDigest) {
		t.Fatalf("ParseSignature(%q) digest=%s, want %s", header, got, strings.ToLower(hexDigest))
	}
}

// checkAcceptedHeader checks a header VerifySignature accepted: it is well
// formed, within the window of now, and carries the digest Sign computes.
func checkAcceptedHeader(t *testing.T, body []byte, header, key string, now time.Time, got int64) {
	t.Helper()
	ts, digest, err := retell.ParseSignature(header)
	if err != nil {
		t.Fatalf("VerifySignature accepted %q, which ParseSignature rejects: %v", header, err)
	}
	if got != ts {
		t.Fatalf("VerifySignature returned %d, want the header's %d", got, ts)
	}
	if skew := now.UnixMilli() - ts; skew > retell.SignatureWindow.Milliseconds() || -skew > retell.SignatureWindow.Milliseconds() {
		t.Fatalf("VerifySignature accepted a timestamp %d ms away from now", skew)
	}
	_, want, _ := retell.ParseSignature(retell.Sign(body, key, time.UnixMilli(ts)))
	if digest != want {
		t.Fatalf("VerifySignature accepted digest %x, want %x", digest, want)
	}
}

// checkRoundTrip signs body at a time derived from nowMS and verifies it.
func checkRoundTrip(t *testing.T, body []byte, key string, nowMS int64) {
	t.Helper()
	ms := nowMS % (maxSignatureMS + 1)
	if ms < 0 {
		ms = -ms
	}
	at := time.UnixMilli(ms)
	header := retell.Sign(body, key, at)
	if !signatureForm.MatchString(header) {
		t.Fatalf("Sign returned %q, not v=<digits>,d=<64 hex>", header)
	}

	got, err := retell.VerifySignature(body, header, key, at)
	if err != nil || got != ms {
		t.Fatalf("VerifySignature of Sign at %d = %d, %v; want %d, nil", ms, got, err, ms)
	}
	for _, edge := range []time.Duration{retell.SignatureWindow, -retell.SignatureWindow} {
		if _, err := retell.VerifySignature(body, header, key, at.Add(edge)); err != nil {
			t.Fatalf("VerifySignature %v from the signature: %v, want accepted", edge, err)
		}
	}
	late := at.Add(retell.SignatureWindow + time.Millisecond)
	if _, err := retell.VerifySignature(body, header, key, late); !errors.Is(err, retell.ErrSignatureExpired) {
		t.Fatalf("VerifySignature 1 ms past the window: err=%v, want %v", err, retell.ErrSignatureExpired)
	}
	if _, err := retell.VerifySignature(body, header, key+"x", at); !errors.Is(err, retell.ErrSignatureMismatch) {
		t.Fatalf("VerifySignature with another key: err=%v, want %v", err, retell.ErrSignatureMismatch)
	}
	other := append(append([]byte(nil), body...), ' ')
	if _, err := retell.VerifySignature(other, header, key, at); !errors.Is(err, retell.ErrSignatureMismatch) {
		t.Fatalf("VerifySignature of another body: err=%v, want %v", err, retell.ErrSignatureMismatch)
	}
}

// FuzzParseWebhook checks that ParseWebhook and DecodeCall never panic, that
// success implies valid JSON and a non-empty call_id, that failures wrap
// ErrMalformedBody or ErrMissingCallID, and that Utterances numbers the
// spoken utterances 0 to n-1.
func FuzzParseWebhook(f *testing.F) {
	for _, dir := range []string{"outbound", "error", "not_connected", "web_call"} {
		names, err := filepath.Glob(filepath.Join(fixtureDir, dir, "webhook_*.json"))
		if err != nil {
			f.Fatal(err)
		}
		for _, name := range names {
			body, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(body)
		}
	}

	f.Fuzz(func(t *testing.T, body []byte) {
		wh, err := retell.ParseWebhook(body)
		if err != nil {
			if wh != nil {
				t.Fatalf("ParseWebhook returned a webhook with err=%v", err)
			}
			if !errors.Is(err, retell.ErrMalformedBody) && !errors.Is(err, retell.ErrMissingCallID) {
				t.Fatalf("ParseWebhook err=%v, want ErrMalformedBody or ErrMissingCallID", err)
			}
		} else {
			if !json.Valid(body) {
				t.Fatalf("ParseWebhook accepted invalid JSON %q", body)
			}
			checkCall(t, "ParseWebhook", &wh.Call)
		}

		call, err := retell.DecodeCall(body)
		if err != nil {
			if !errors.Is(err, retell.ErrMalformedBody) && !errors.Is(err, retell.ErrMissingCallID) {
				t.Fatalf("DecodeCall err=%v, want ErrMalformedBody or ErrMissingCallID", err)
			}
			return
		}
		checkCall(t, "DecodeCall", call)
	})
}

func checkCall(t *testing.T, decoder string, c *retell.Call) {
	t.Helper()
	if c.CallID == "" {
		t.Fatalf("%s succeeded with an empty call_id", decoder)
	}
	if got := c.Fields().ID; got != c.CallID {
		t.Fatalf("%s: Fields().ID=%q, want %q", decoder, got, c.CallID)
	}
	utterances, present := c.Utterances()
	if !present && len(utterances) != 0 {
		t.Fatalf("%s: Utterances returned %d items with present false", decoder, len(utterances))
	}
	for i, u := range utterances {
		if u.Index != i {
			t.Fatalf("%s: utterance %d has index %d", decoder, i, u.Index)
		}
		if !callcat.IsUtteranceRole(u.Role) {
			t.Fatalf("%s: utterance %d has role %q, which is not spoken", decoder, i, u.Role)
		}
	}
}
