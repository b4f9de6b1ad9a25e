package retell

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"time"
)

// SignatureHeader is the HTTP header that carries a webhook's signature.
const SignatureHeader = "X-Retell-Signature"

// SignatureWindow is how far the signature timestamp may be from the
// verifier's clock, in either direction. The boundary itself is accepted.
const SignatureWindow = 5 * time.Minute

// Signature verification errors. Each one means the webhook must be rejected
// with 401.
var (
	ErrSignatureMissing   = errors.New("signature header missing")
	ErrSignatureMalformed = errors.New("signature header malformed")
	ErrSignatureExpired   = errors.New("signature timestamp outside the replay window")
	ErrSignatureMismatch  = errors.New("signature does not match body")
)

// maxSafeInteger is JavaScript's largest safe integer. The official SDK
// rejects a larger v=, and so does ParseSignature. Leading zeros are allowed,
// as in the SDK.
const maxSafeInteger = 1<<53 - 1

// ParseSignature splits a header value of the exact form
// "v=<decimal ms>,d=<64 hex digits>" into its timestamp and digest. Hex digits
// may be upper or lower case, as retell-sdk 5.66.1 accepts. Anything else
// (spaces, extra fields, a prefix, another order) is ErrSignatureMalformed.
func ParseSignature(header string) (timestampMS int64, digest [sha256.Size]byte, err error) {
	if header == "" {
		return 0, digest, ErrSignatureMissing
	}

	const digestHex = 2 * sha256.Size
	if len(header) < len("v=0,d=")+digestHex || header[:2] != "v=" {
		return 0, digest, ErrSignatureMalformed
	}
	rest := header[2:]
	comma := len(rest) - digestHex - len(",d=")
	if comma < 1 || rest[comma:comma+3] != ",d=" {
		return 0, digest, ErrSignatureMalformed
	}

	digits := rest[:comma]
	var ts int64
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		if c < '0' || c > '9' {
			return 0, digest, ErrSignatureMalformed
		}
		ts = ts*10 + int64(c-'0')
		if ts > maxSafeInteger {
			return 0, digest, ErrSignatureMalformed
		}
	}

	if _, err := hex.Decode(digest[:], []byte(rest[comma+3:])); err != nil {
		return 0, digest, ErrSignatureMalformed
	}
	return ts, digest, nil
}

// VerifySignature checks a webhook's signature header against its raw body
// and the API key, at time now. It returns the signature timestamp (Unix ms).
//
// The digest is HMAC-SHA256 keyed with the API key over the body bytes
// followed by the decimal timestamp without leading zeros; it is compared in
// constant time. The timestamp must be within SignatureWindow of now.
func VerifySignature(body []byte, header, apiKey string, now time.Time) (int64, error) {
	ts, digest, err := ParseSignature(header)
	if err != nil {
		return 0, err
	}

	skew := now.UnixMilli() - ts
	if skew < 0 {
		skew = -skew
	}
	if skew > SignatureWindow.Milliseconds() {
		return ts, ErrSignatureExpired
	}

	want := computeDigest(body, apiKey, ts)
	if !hmac.Equal(want[:], digest[:]) {
		return ts, ErrSignatureMismatch
	}
	return ts, nil
}

// Sign returns the signature header value the provider would send for body
// at time t. The simulator and the replay tool use it.
func Sign(body []byte, apiKey string, t time.Time) string {
	ts := t.UnixMilli()
	digest := computeDigest(body, apiKey, ts)
	return "v=" + strconv.FormatInt(ts, 10) + ",d=" + hex.EncodeToString(digest[:])
}

func computeDigest(body []byte, apiKey string, ts int64) [sha256.Size]byte {
	mac := hmac.New(sha256.New, []byte(apiKey))
	mac.Write(body)

	var buf [20]byte
	mac.Write(strconv.AppendInt(buf[:0], ts, 10))

	var out [sha256.Size]byte
	mac.Sum(out[:0])
	return out
}
