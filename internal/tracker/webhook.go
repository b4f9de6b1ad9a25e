package tracker

import (
	"context"
	"errors"
	"fmt"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/retell"
)

// Webhook event names the tracker acts on. Other events (transfer_* and
// names added later) update the call's fields but never its transcript and
// never end it.
const (
	EventCallStarted       = "call_started"
	EventCallEnded         = "call_ended"
	EventCallAnalyzed      = "call_analyzed"
	EventTranscriptUpdated = "transcript_updated"
)

// HandleWebhook stores one verified webhook and returns when it is durable.
// It never waits on the provider: a call that became terminal gets its final
// fetch queued for the poll workers.
//
// A duplicate delivery (same body digest) returns Duplicate and changes
// nothing. The delivery's SignedAt orders its transcript against others.
func (t *Tracker) HandleWebhook(ctx context.Context, wh *retell.Webhook, d callcat.Delivery) (callcat.ApplyResult, error) {
	u, err := webhookUpdate(wh, d)
	if err != nil {
		return callcat.ApplyResult{}, err
	}

	// The registry is updated under the call's lock too. Otherwise a poll
	// could store the call's end and untrack it between this apply and
	// afterApply, which would then track the ended call again as live.
	lock := t.lockOf(u.Fields.ID)
	lock.Lock()
	defer lock.Unlock()

	res, err := t.applyLocked(ctx, u)
	if err != nil || res.Duplicate {
		return res, err
	}
	t.forgetDigest(res.Call.ID)

	t.afterApply(ctx, wh.Event, res)
	return res, nil
}

// webhookUpdate maps a webhook to a store update.
//
// transcript_updated may carry a terminal call_status on its last delivery;
// the tracker does not end a call on it (call_ended does that), so the status
// is capped at ongoing and its snapshot counts as live. call_ended and
// call_analyzed carry the provider's final transcript.
func webhookUpdate(wh *retell.Webhook, d callcat.Delivery) (callcat.Update, error) {
	if wh == nil || wh.Call.CallID == "" {
		return callcat.Update{}, fmt.Errorf("webhook without call_id: %w", callcat.ErrInvalid)
	}

	u := callcat.Update{Fields: wh.Call.Fields()}
	u.Fields.ID = wh.Call.CallID
	delivery := d
	delivery.CallID = wh.Call.CallID
	delivery.Event = wh.Event
	u.Delivery = &delivery

	lifecycle := wh.Event == EventCallStarted || wh.Event == EventCallEnded || wh.Event == EventCallAnalyzed
	if !lifecycle && u.Fields.Status.Terminal() {
		u.Fields.Status = callcat.StatusOngoing
	}

	if wh.Event != EventTranscriptUpdated && wh.Event != EventCallEnded && wh.Event != EventCallAnalyzed {
		return u, nil
	}
	if utterances, ok := wh.Call.Utterances(); ok {
		u.Snapshot = &callcat.Snapshot{
			Utterances: utterances,
			Final:      wh.Event != EventTranscriptUpdated && u.Fields.Status.Terminal(),
			TakenAt:    d.SignedAt,
		}
	}
	return u, nil
}

// afterApply updates the in-memory registry after a webhook was stored.
func (t *Tracker) afterApply(ctx context.Context, event string, res callcat.ApplyResult) {
	id := res.Call.ID
	status := res.Call.Status

	if status.Terminal() {
		if endedNow(res.Events) {
			// One last fetch picks up what the webhook lacked; then the call
			// leaves memory.
			if err := t.track(id, t.cfg.Now(), true); err != nil && !errors.Is(err, ErrTooManyCalls) {
				t.logger.Warn("final fetch not queued", "call_id", id, "err", err)
			}
		}
		return
	}

	if !status.Live() {
		return
	}
	if t.leasing() {
		t.claimAndTrack(ctx, id)
	} else if err := t.track(id, t.cfg.Now(), false); err != nil {
		return
	}
	if event == EventTranscriptUpdated {
		t.notePush(id)
	}
}

func endedNow(events []callcat.Event) bool {
	for i := range events {
		if events[i].Type == callcat.EventEnded {
			return true
		}
	}
	return false
}
