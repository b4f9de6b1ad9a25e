package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/retell"
)

// webhookApplyTimeout bounds the store write behind one webhook, well inside
// the provider's 10 s delivery timeout, so a stuck store answers 503 and the
// provider retries.
const webhookApplyTimeout = 5 * time.Second

// maxPooledBody is the largest body buffer kept for reuse; larger buffers
// (rare, up to MaxWebhookBytes) are left to the garbage collector.
const maxPooledBody = 256 << 10

var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// handleWebhook receives a provider webhook: it verifies the signature over
// the raw body, decodes the payload and stores it before answering.
//
// 204 accepted (also duplicates and unknown events), 400 malformed or without
// call.call_id, 401 missing, invalid or expired signature, 413 over
// MaxWebhookBytes, 503 when the store cannot take it (the provider retries).
func (s *server) handleWebhook() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.cfg.Now()

		buf := bodyPool.Get().(*bytes.Buffer)
		buf.Reset()
		defer func() {
			if buf.Cap() <= maxPooledBody {
				bodyPool.Put(buf)
			}
		}()

		body, err := readBody(w, r, buf, s.cfg.MaxWebhookBytes)
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				s.metrics.webhooks.WithLabelValues("unknown", "too_large").Inc()
				s.limited.Log(r.Context(), slog.LevelWarn, "webhook_too_large", "webhook rejected: body over the limit",
					"remote_addr", r.RemoteAddr, "limit_bytes", s.cfg.MaxWebhookBytes, "content_length", r.ContentLength)
				s.writeError(w, http.StatusRequestEntityTooLarge, "webhook body exceeds the limit of "+formatBytes(s.cfg.MaxWebhookBytes))
				return
			}
			s.metrics.webhooks.WithLabelValues("unknown", "read_error").Inc()
			s.writeError(w, http.StatusBadRequest, "reading the webhook body failed")
			return
		}

		signedAt, err := retell.VerifySignature(body, r.Header.Get(retell.SignatureHeader), s.cfg.WebhookKey, start)
		if err != nil {
			s.metrics.webhooks.WithLabelValues("unknown", "bad_signature").Inc()
			s.limited.Log(r.Context(), slog.LevelWarn, "webhook_signature", "webhook rejected: signature check failed",
				"client_addr", addrString(s.clientAddr(r)), "reason", err)
			s.writeError(w, http.StatusUnauthorized, "invalid webhook signature: "+err.Error())
			return
		}

		wh, err := retell.ParseWebhook(body)
		if err != nil {
			s.metrics.webhooks.WithLabelValues("unknown", "malformed").Inc()
			s.writeError(w, http.StatusBadRequest, err.Error())
			return
		}

		digest := sha256.Sum256(body)
		delivery := callcat.Delivery{
			Digest:     hex.EncodeToString(digest[:]),
			SignedAt:   signedAt,
			ReceivedAt: start,
		}

		ctx, cancel := context.WithTimeout(r.Context(), webhookApplyTimeout)
		res, err := s.cfg.Tracker.HandleWebhook(ctx, wh, delivery)
		cancel()
		event := eventLabel(wh.Event)
		if err != nil {
			s.metrics.webhooks.WithLabelValues(event, "store_error").Inc()
			s.limited.Log(r.Context(), slog.LevelError, "webhook_store", "webhook not stored; responded 503 so the provider retries",
				"call_id", wh.Call.CallID, "event", wh.Event, "err", err)
			w.Header().Set("Retry-After", "1")
			s.writeError(w, http.StatusServiceUnavailable, "the store cannot take the webhook now; retry")
			return
		}

		outcome := "accepted"
		if res.Duplicate {
			outcome = "duplicate"
		}
		if res.Created && !res.Duplicate {
			s.logger.Debug("call stored from webhook", "call_id", wh.Call.CallID, "event", wh.Event,
				"direction", wh.Call.Direction,
				"from_number", s.logPhone(wh.Call.FromNumber),
				"to_number", s.logPhone(wh.Call.ToNumber))
		}
		s.metrics.webhooks.WithLabelValues(event, outcome).Inc()
		s.metrics.webhookDuration.Observe(s.cfg.Now().Sub(start).Seconds())
		w.WriteHeader(http.StatusNoContent)
	})
}

// readBody reads the request body into buf, failing with *http.MaxBytesError
// past limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, buf *bytes.Buffer, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}

	body := http.MaxBytesReader(w, r.Body, limit)
	if _, err := buf.ReadFrom(body); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf.Bytes(), nil
}
