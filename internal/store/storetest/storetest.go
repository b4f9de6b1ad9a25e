// Package storetest is a conformance suite for callcat.Store implementations.
// Every store runs the same suite, so the SQLite and PostgreSQL stores behave
// the same behind the interface.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/callcat/callcat/internal/callcat"
)

// Run runs the conformance suite, one subtest per behaviour. open must return
// a new, empty store on each call and close it through t.Cleanup.
//
// The suite requires three things beyond the callcat.Store doc comments.
// Apply rejects invalid metadata or analysis JSON and an empty delivery
// digest with callcat.ErrInvalid. The Call in an ApplyResult equals what Call
// reads back later, so a store that truncates times must truncate the clock
// before it calls callcat.Merge. A snapshot key that moves without changing
// any utterance is stored too, which callcat.Change.Changed does not report.
func Run(t *testing.T, open func(t *testing.T) callcat.Store) {
	tests := []struct {
		name string
		test func(t *testing.T, s callcat.Store)
	}{
		{"ApplyCreates", testApplyCreates},
		{"ApplyKeepsAbsentFields", testApplyKeepsAbsentFields},
		{"ApplyStoresJSONVerbatim", testApplyStoresJSONVerbatim},
		{"ApplyUnusualText", testApplyUnusualText},
		{"ApplyRepeatedIsNoop", testApplyRepeatedIsNoop},
		{"ApplyInvalid", testApplyInvalid},
		{"ApplyCanceled", testApplyCanceled},
		{"EventSeqs", testEventSeqs},
		{"EventsUnknownCall", testEventsUnknownCall},
		{"LimitsClamped", testLimitsClamped},
		{"SnapshotStale", testSnapshotStale},
		{"SnapshotFinalWins", testSnapshotFinalWins},
		{"SnapshotFinalKeyStored", testSnapshotFinalKeyStored},
		{"StatusTerminalIsFinal", testStatusTerminalIsFinal},
		{"UtteranceGrowsInPlace", testUtteranceGrowsInPlace},
		{"UtteranceWordsOnly", testUtteranceWordsOnly},
		{"TruncateShorterFinal", testTruncateShorterFinal},
		{"DeliveryDuplicate", testDeliveryDuplicate},
		{"ConcurrentWriters", testConcurrentWriters},
		{"CallsStatusFilter", testCallsStatusFilter},
		{"CallsNewestFirst", testCallsNewestFirst},
		{"CallsPagination", testCallsPagination},
		{"CallsLimit", testCallsLimit},
		{"CallsFieldFilters", testCallsFieldFilters},
		{"CallsBadCursor", testCallsBadCursor},
		{"LiveCalls", testLiveCalls},
		{"IdempotencyClaim", testIdempotencyClaim},
		{"IdempotencyConcurrent", testIdempotencyConcurrent},
		{"PruneCalls", testPruneCalls},
		{"PruneDeliveries", testPruneDeliveries},
		{"PruneIdempotency", testPruneIdempotency},
		{"NotFound", testNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.test(t, open(t))
		})
	}
}

func testApplyCreates(t *testing.T, s callcat.Store) {
	ctx := t.Context()
	u := fullUpdate("call_create")
	u.Snapshot = liveSnapshot(2)

	res := mustApply(t, s, u)

	if !res.Created {
		t.Fatalf("Created=false, want true")
	}
	if res.Duplicate {
		t.Fatalf("Duplicate=true, want false")
	}
	if res.Call.ID != u.Fields.ID {
		t.Fatalf("Call.ID=%q, want %q", res.Call.ID, u.Fields.ID)
	}
	if res.Call.Status != callcat.StatusOngoing {
		t.Fatalf("Call.Status=%q, want %q", res.Call.Status, callcat.StatusOngoing)
	}
	if res.Call.UtteranceCount != 2 {
		t.Fatalf("Call.UtteranceCount=%d, want 2", res.Call.UtteranceCount)
	}
	if res.Call.CreatedAt.IsZero() {
		t.Fatalf("Call.CreatedAt is zero")
	}
	if !res.Call.UpdatedAt.Equal(res.Call.CreatedAt) {
		t.Fatalf("Call.UpdatedAt=%v, want CreatedAt %v", res.Call.UpdatedAt, res.Call.CreatedAt)
	}
	wantTypes := []callcat.EventType{callcat.EventUtterance, callcat.EventUtterance, callcat.EventStatus}
	if diff := cmp.Diff(wantTypes, eventTypes(res.Events)); diff != "" {
		t.Fatalf("event types (-want +got):\n%s", diff)
	}
	if res.Call.LastSeq != 3 {
		t.Fatalf("Call.LastSeq=%d, want 3", res.Call.LastSeq)
	}

	want := callcat.Call{
		ID:                  u.Fields.ID,
		Status:              callcat.StatusOngoing,
		Type:                u.Fields.Type,
		Direction:           u.Fields.Direction,
		FromNumber:          u.Fields.FromNumber,
		ToNumber:            u.Fields.ToNumber,
		AgentID:             u.Fields.AgentID,
		StartTimestamp:      u.Fields.StartTimestamp,
		EndTimestamp:        u.Fields.EndTimestamp,
		DurationMS:          u.Fields.DurationMS,
		DisconnectionReason: u.Fields.DisconnectionReason,
		UtteranceCount:      2,
		Metadata:            u.Fields.Metadata,
		Analysis:            u.Fields.Analysis,
		LastSeq:             3,
		CreatedAt:           res.Call.CreatedAt,
		UpdatedAt:           res.Call.UpdatedAt,
	}
	if diff := cmp.Diff(want, res.Call); diff != "" {
		t.Fatalf("ApplyResult.Call (-want +got):\n%s", diff)
	}

	got, err := s.Call(ctx, u.Fields.ID)
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if diff := cmp.Diff(res.Call, got); diff != "" {
		t.Fatalf("Call differs from ApplyResult.Call (-apply +read):\n%s", diff)
	}

	transcript := mustTranscript(t, s, u.Fields.ID)
	if diff := cmp.Diff(u.Snapshot.Utterances, transcript); diff != "" {
		t.Fatalf("Transcript (-want +got):\n%s", diff)
	}
}

func testApplyKeepsAbsentFields(t *testing.T, s callcat.Store) {
	ctx := t.Context()
	first := fullUpdate("call_absent")
	first.Snapshot = liveSnapshot(3)
	created := mustApply(t, s, first)

	// A poll that carries only the id, a status and no transcript.
	res := mustApply(t, s, callcat.Update{Fields: callcat.CallFields{
		ID:     first.Fields.ID,
		Status: callcat.StatusOngoing,
	}})
	if len(res.Events) != 0 {
		t.Fatalf("events=%v, want none", eventTypes(res.Events))
	}

	got, err := s.Call(ctx, first.Fields.ID)
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if diff := cmp.Diff(created.Call, got); diff != "" {
		t.Fatalf("Call after sparse update (-want +got):\n%s", diff)
	}
	transcript := mustTranscript(t, s, first.Fields.ID)
	if len(transcript) != 3 {
		t.Fatalf("len(Transcript)=%d, want 3 (a missing snapshot keeps the transcript)", len(transcript))
	}

	// A present field replaces the stored value; the others stay.
	res = mustApply(t, s, callcat.Update{Fields: callcat.CallFields{
		ID:         first.Fields.ID,
		DurationMS: int64Pointer(99),
	}})
	if res.Call.DurationMS == nil || *res.Call.DurationMS != 99 {
		t.Fatalf("DurationMS=%v, want 99", res.Call.DurationMS)
	}
	if res.Call.FromNumber != first.Fields.FromNumber {
		t.Fatalf("FromNumber=%q, want %q", res.Call.FromNumber, first.Fields.FromNumber)
	}
	got, err = s.Call(ctx, first.Fields.ID)
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if diff := cmp.Diff(res.Call, got); diff != "" {
		t.Fatalf("Call differs from ApplyResult.Call (-apply +read):\n%s", diff)
	}
}

func testApplyStoresJSONVerbatim(t *testing.T, s callcat.Store) {
	ctx := t.Context()
	id := "call_json"

	// Key order, spacing, escapes and number forms must survive byte for byte.
	metadata := json.RawMessage(`{ "z": 1,  "a": [1, 2.50, 1e3], "name": "Jos\u00e9", "nested": {"b": null} }`)
	analysis := json.RawMessage(`{"call_successful":true,"user_sentiment":"Positive","custom_analysis_data":{}}`)
	mustApply(t, s, callcat.Update{Fields: callcat.CallFields{ID: id, Metadata: metadata}})

	got, err := s.Call(ctx, id)
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if string(got.Metadata) != string(metadata) {
		t.Fatalf("Metadata=%s, want %s", got.Metadata, metadata)
	}
	if got.Analysis != nil {
		t.Fatalf("Analysis=%s, want nil before any analysis", got.Analysis)
	}

	mustApply(t, s, callcat.Update{Fields: callcat.CallFields{ID: id, Analysis: analysis}})
	got, err = s.Call(ctx, id)
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if string(got.Analysis) != string(analysis) {
		t.Fatalf("Analysis=%s, want %s", got.Analysis, analysis)
	}
	if string(got.Metadata) != string(metadata) {
		t.Fatalf("Metadata=%s after analysis update, want %s", got.Metadata, metadata)
	}

	replaced := json.RawMessage(`{"a":2}`)
	mustApply(t, s, callcat.Update{Fields: callcat.CallFields{ID: id, Metadata: replaced}})
	got, err = s.Call(ctx, id)
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if string(got.Metadata) != string(replaced) {
		t.Fatalf("Metadata=%s, want %s", got.Metadata, replaced)
	}
}

// testApplyUnusualText applies text that not every store can hold byte for
// byte: NUL characters and invalid UTF-8, which PostgreSQL's text type
// rejects. The update must be stored, and applying it again must change
// nothing, so a poll that repeats such a payload emits no events.
func testApplyUnusualText(t *testing.T, s callcat.Store) {
	ctx := t.Context()
	id := "call_unusual_text"
	u := snapshotUpdate(id, callcat.StatusOngoing, liveSnapshot(2))
	u.Snapshot.Utterances[1].Content = "nul\x00 and \xff"
	u.Snapshot.Utterances[0].Role = "agent\x00"
	u.Snapshot.Utterances[0].Words[0].Word = "nul\x00\xfe"
	u.Fields.FromNumber = "+1555\xfe"
	u.Fields.DisconnectionReason = "hangup\x00"
	u.Fields.Metadata = json.RawMessage("{\"name\":\"Jos\xe9\"}")

	first := mustApply(t, s, u)
	if !first.Created {
		t.Fatalf("Created=false, want true")
	}

	again := mustApply(t, s, u)
	if len(again.Events) != 0 {
		t.Fatalf("events on the second apply=%v, want none", eventTypes(again.Events))
	}
	if diff := cmp.Diff(first.Call, again.Call); diff != "" {
		t.Fatalf("Call changed by the second apply (-first +second):\n%s", diff)
	}
	call, err := s.Call(ctx, id)
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if diff := cmp.Diff(first.Call, call); diff != "" {
		t.Fatalf("Call differs from ApplyResult.Call (-apply +read):\n%s", diff)
	}
	if got := len(mustTranscript(t, s, id)); got != 2 {
		t.Fatalf("len(Transcript)=%d, want 2", got)
	}
}

func testApplyRepeatedIsNoop(t *testing.T, s callcat.Store) {
	ctx := t.Context()
	u := fullUpdate("call_repeat")
	u.Snapshot = liveSnapshot(4)
	first := mustApply(t, s, u)

	again := mustApply(t, s, u)

	if again.Created {
		t.Fatalf("Created=true on the second apply, want false")
	}
	if again.SnapshotStale {
		t.Fatalf("SnapshotStale=true for an equal snapshot, want false")
	}
	if len(again.Events) != 0 {
		t.Fatalf("events=%v, want none", eventTypes(again.Events))
	}
	if diff := cmp.Diff(first.Call, again.Call); diff != "" {
		t.Fatalf("Call changed (-first +second):\n%s", diff)
	}
	got, err := s.Call(ctx, u.Fields.ID)
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if !got.UpdatedAt.Equal(first.Call.UpdatedAt) {
		t.Fatalf("UpdatedAt=%v, want unchanged %v", got.UpdatedAt, first.Call.UpdatedAt)
	}
}

func testApplyInvalid(t *testing.T, s callcat.Store) {
	ctx := t.Context()
	tests := []struct {
		name   string
		update callcat.Update
	}{
		{"EmptyID", callcat.Update{Fields: callcat.CallFields{Status: callcat.StatusOngoing}}},
		{"BadMetadata", callcat.Update{Fields: callcat.CallFields{ID: "call_bad", Metadata: json.RawMessage(`{"a":`)}}},
		{"BadAnalysis", callcat.Update{Fields: callcat.CallFields{ID: "call_bad", Analysis: json.RawMessage(`nope`)}}},
		{"EmptyDigest", callcat.Update{
			Fields:   callcat.CallFields{ID: "call_bad"},
			Delivery: &callcat.Delivery{Event: "call_started", CallID: "call_bad"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Apply(ctx, tc.update)
			if !errors.Is(err, callcat.ErrInvalid) {
				t.Fatalf("Apply err=%v, want ErrInvalid", err)
			}
		})
	}

	page, err := s.Calls(ctx, callcat.CallFilter{})
	if err != nil {
		t.Fatalf("Calls: %v", err)
	}
	if len(page.Calls) != 0 {
		t.Fatalf("len(Calls)=%d after invalid updates, want 0", len(page.Calls))
	}
}

func testApplyCanceled(t *testing.T, s callcat.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	_, err := s.Apply(ctx, fullUpdate("call_canceled"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply err=%v, want context.Canceled", err)
	}
	_, err = s.Call(t.Context(), "call_canceled")
	if !errors.Is(err, callcat.ErrNotFound) {
		t.Fatalf("Call err=%v, want ErrNotFound after a canceled Apply", err)
	}
}

func testEventSeqs(t *testing.T, s callcat.Store) {
	ctx := t.Context()
	id := "call_seqs"
	var applied []callcat.Event
	for _, u := range []callcat.Update{
		statusUpdate(id, callcat.StatusRegistered),
		snapshotUpdate(id, callcat.StatusOngoing, liveSnapshot(1)),
		snapshotUpdate(id, "", liveSnapshot(3)),
		snapshotUpdate(id, callcat.StatusEnded, finalSnapshot(3)),
	} {
		applied = append(applied, mustApply(t, s, u).Events...)
	}

	n := int64(len(applied))
	if n != 7 {
		t.Fatalf("len(events)=%d, want 7: %v", n, eventTypes(applied))
	}
	for i, ev := range applied {
		if ev.Seq != int64(i+1) {
			t.Fatalf("event %d: Seq=%d, want %d", i, ev.Seq, i+1)
		}
		if ev.CallID != id {
			t.Fatalf("event %d: CallID=%q, want %q", i, ev.CallID, id)
		}
	}

	call, err := s.Call(ctx, id)
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if call.LastSeq != n {
		t.Fatalf("LastSeq=%d, want %d", call.LastSeq, n)
	}

	for after := int64(0); after <= n; after++ {
		got, err := s.Events(ctx, id, after, 100)
		if err != nil {
			t.Fatalf("Events(after=%d): %v", after, err)
		}
		if diff := cmp.Diff(applied[after:], got, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("Events(after=%d) (-want +got):\n%s", after, diff)
		}
	}

	got, err := s.Events(ctx, id, 2, 3)
	if err != nil {
		t.Fatalf("Events(after=2, limit=3): %v", err)
	}
	if diff := cmp.Diff(applied[2:5], got); diff != "" {
		t.Fatalf("Events(after=2, limit=3) (-want +got):\n%s", diff)
	}
}

func testEventsUnknownCall(t *testing.T, s callcat.Store) {
	events, err := s.Events(t.Context(), "call_unknown", 0, 10)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	if len(events) != 0 {
		t.Fatalf("len(Events)=%d, want 0", len(events))
	}
}

// testLimitsClamped checks that a limit below one reads one row, as the
// stores clamp Events and LiveCalls limits to at least one.
func testLimitsClamped(t *testing.T, s callcat.Store) {
	ctx := t.Context()
	mustApply(t, s, snapshotUpdate("call_clamp_1", callcat.StatusOngoing, liveSnapshot(3)))
	mustApply(t, s, statusUpdate("call_clamp_2", callcat.StatusOngoing))

	for _, limit := range []int{0, -5} {
		events, err := s.Events(ctx, "call_clamp_1", 0, limit)
		if err != nil {
			t.Fatalf("Events(limit=%d): %v", limit, err)
		}
		if len(events) != 1 {
			t.Fatalf("Events(limit=%d) returned %d events, want 1", limit, len(events))
		}
		live, err := s.LiveCalls(ctx, limit)
		if err != nil {
			t.Fatalf("LiveCalls(limit=%d): %v", limit, err)
		}
		if len(live) != 1 {
			t.Fatalf("LiveCalls(limit=%d) returned %d calls, want 1", limit, len(live))
		}
	}
}

func testSnapshotStale(t *testing.T, s callcat.Store) {
	ctx := t.Context()
	id := "call_stale"
	mustApply(t, s, snapshotUpdate(id, callcat.StatusOngoing, liveSnapshot(4)))

	// Fewer utterances and an earlier last word: an older webhook arriving late.
	res := mustApply(t, s, snapshotUpdate(id, "", liveSnapshot(2)))

	if !res.SnapshotStale {
		t.Fatalf("SnapshotStale=false, want true")
	}
	if len(res.Events) != 0 {
		t.Fatalf("events=%v, want none", eventTypes(res.Events))
	}
	if res.Call.UtteranceCount != 4 {
		t.Fatalf("UtteranceCount=%d, want 4", res.Call.UtteranceCount)
	}
	transcript := mustTranscript(t, s, id)
	if diff := cmp.Diff(makeUtterances(4), transcript); diff != "" {
		t.Fatalf("Transcript (-want +got):\n%s", diff)
	}
	call, err := s.Call(ctx, id)
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if call.UtteranceCount != 4 {
		t.Fatalf("stored UtteranceCount=%d, want 4", call.UtteranceCount)
	}
}

func testSnapshotFinalWins(t *testing.T, s callcat.Store) {
	id := "call_final"
	mustApply(t, s, snapshotUpdate(id, callcat.StatusOngoing, liveSnapshot(6)))

	// The post-call transcript is the record even when it is shorter.
	res := mustApply(t, s, snapshotUpdate(id, "", finalSnapshot(4)))
	if res.SnapshotStale {
		t.Fatalf("final snapshot: SnapshotStale=true, want false")
	}
	if got := len(mustTranscript(t, s, id)); got != 4 {
		t.Fatalf("len(Transcript)=%d after final snapshot, want 4", got)
	}

	// A larger live snapshot that arrives after the final one is stale.
	res = mustApply(t, s, snapshotUpdate(id, "", liveSnapshot(8)))
	if !res.SnapshotStale {
		t.Fatalf("live after final: SnapshotStale=false, want true")
	}
	if len(res.Events) != 0 {
		t.Fatalf("live after final: events=%v, want none", eventTypes(res.Events))
	}
	if got := len(mustTranscript(t, s, id)); got != 4 {
		t.Fatalf("len(Transcript)=%d after late live snapshot, want 4", got)
	}
}

func testSnapshotFinalKeyStored(t *testing.T, s callcat.Store) {
	id := "call_final_key"
	mustApply(t, s, snapshotUpdate(id, callcat.StatusOngoing, liveSnapshot(3)))

	// The final snapshot equals the stored live one: no utterance changes,
	// but the store must remember that its transcript is now final.
	res := mustApply(t, s, snapshotUpdate(id, "", finalSnapshot(3)))
	if len(res.Events) != 0 {
		t.Fatalf("equal final snapshot: events=%v, want none", eventTypes(res.Events))
	}

	res = mustApply(t, s, snapshotUpdate(id, "", liveSnapshot(5)))
	if !res.SnapshotStale {
		t.Fatalf("live after equal final: SnapshotStale=false, want true")
	}
	if got := len(mustTranscript(t, s, id)); got != 3 {
		t.Fatalf("len(Transcript)=%d, want 3", got)
	}
}

func testStatusTerminalIsFinal(t *testing.T, s callcat.Store) {
	ctx := t.Context()
	id := "call_terminal"
	mustApply(t, s, statusUpdate(id, callcat.StatusRegistered))
	mustApply(t, s, statusUpdate(id, callcat.StatusOngoing))

	ended := statusUpdate(id, callcat.StatusEnded)
	ended.Fields.DisconnectionReason = "agent_hangup"
	res := mustApply(t, s, ended)
	wantTypes := []callcat.EventType{callcat.EventStatus, callcat.EventEnded}
	if diff := cmp.Diff(wantTypes, eventTypes(res.Events)); diff != "" {
		t.Fatalf("ended: event types (-want +got):\n%s", diff)
	}
	var endedData callcat.EndedData
	decodeData(t, res.Events[1], &endedData)
	want := callcat.EndedData{Status: callcat.StatusEnded, DisconnectionReason: "agent_hangup"}
	if endedData != want {
		t.Fatalf("ended data=%+v, want %+v", endedData, want)
	}
	lastSeq := res.Call.LastSeq

	// Late or repeated updates never reopen the call or end it twice.
	for _, status := range []callcat.Status{
		callcat.StatusOngoing, callcat.StatusRegistered, callcat.StatusEnded, callcat.StatusError,
	} {
		res := mustApply(t, s, statusUpdate(id, status))
		if len(res.Events) != 0 {
			t.Fatalf("%s after ended: events=%v, want none", status, eventTypes(res.Events))
		}
		if res.Call.Status != callcat.StatusEnded {
			t.Fatalf("%s after ended: Status=%q, want ended", status, res.Call.Status)
		}
	}

	call, err := s.Call(ctx, id)
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if call.Status != callcat.StatusEnded {
		t.Fatalf("stored Status=%q, want ended", call.Status)
	}
	if call.LastSeq != lastSeq {
		t.Fatalf("LastSeq=%d, want %d", call.LastSeq, lastSeq)
	}
	endedCount := 0
	for _, ev := range allEvents(t, s, id) {
		if ev.Type == callcat.EventEnded {
			endedCount++
		}
	}
	if endedCount != 1 {
		t.Fatalf("ended events=%d, want 1", endedCount)
	}
}

func testUtteranceGrowsInPlace(t *testing.T, s callcat.Store) {
	id := "call_grow"
	mustApply(t, s, snapshotUpdate(id, callcat.StatusOngoing, liveSnapshot(3)))

	// The caller keeps talking: the last utterance gets two more words.
	grown := makeUtterances(3)
	grown[2] = growUtterance(grown[2], 2)
	res := mustApply(t, s, snapshotUpdate(id, "", &callcat.Snapshot{Utterances: grown, TakenAt: 4}))

	if len(res.Events) != 1 {
		t.Fatalf("events=%v, want one utterance event", eventTypes(res.Events))
	}
	if res.Events[0].Type != callcat.EventUtterance {
		t.Fatalf("event type=%q, want utterance", res.Events[0].Type)
	}
	var data callcat.UtteranceData
	decodeData(t, res.Events[0], &data)
	want := callcat.UtteranceData{Index: 2, Role: grown[2].Role, Content: grown[2].Content}
	if data != want {
		t.Fatalf("utterance data=%+v, want %+v", data, want)
	}
	transcript := mustTranscript(t, s, id)
	if diff := cmp.Diff(grown, transcript); diff != "" {
		t.Fatalf("Transcript (-want +got):\n%s", diff)
	}
}

func testUtteranceWordsOnly(t *testing.T, s callcat.Store) {
	id := "call_words"
	mustApply(t, s, snapshotUpdate(id, callcat.StatusOngoing, liveSnapshot(2)))

	// Same text, corrected timings: stored, but no event.
	retimed := makeUtterances(2)
	for i := range retimed[1].Words {
		retimed[1].Words[i].End += 0.05
	}
	res := mustApply(t, s, snapshotUpdate(id, "", &callcat.Snapshot{Utterances: retimed, TakenAt: 3}))

	if len(res.Events) != 0 {
		t.Fatalf("events=%v, want none", eventTypes(res.Events))
	}
	transcript := mustTranscript(t, s, id)
	if diff := cmp.Diff(retimed, transcript); diff != "" {
		t.Fatalf("Transcript (-want +got):\n%s", diff)
	}
}

func testTruncateShorterFinal(t *testing.T, s callcat.Store) {
	id := "call_truncate"
	mustApply(t, s, snapshotUpdate(id, callcat.StatusOngoing, liveSnapshot(5)))

	res := mustApply(t, s, snapshotUpdate(id, "", finalSnapshot(3)))

	if diff := cmp.Diff([]callcat.EventType{callcat.EventTruncate}, eventTypes(res.Events)); diff != "" {
		t.Fatalf("event types (-want +got):\n%s", diff)
	}
	var data callcat.TruncateData
	decodeData(t, res.Events[0], &data)
	if data.UtteranceCount != 3 {
		t.Fatalf("truncate utterance_count=%d, want 3", data.UtteranceCount)
	}
	if res.Call.UtteranceCount != 3 {
		t.Fatalf("UtteranceCount=%d, want 3", res.Call.UtteranceCount)
	}
	transcript := mustTranscript(t, s, id)
	if diff := cmp.Diff(makeUtterances(3), transcript); diff != "" {
		t.Fatalf("Transcript (-want +got):\n%s", diff)
	}
}

func testDeliveryDuplicate(t *testing.T, s callcat.Store) {
	ctx := t.Context()
	id := "call_delivery"
	u := snapshotUpdate(id, callcat.StatusOngoing, liveSnapshot(2))
	u.Delivery = &callcat.Delivery{
		Digest:   strings.Repeat("ab", 32),
		Event:    "transcript_updated",
		CallID:   id,
		SignedAt: 1781000020000,
	}

	first := mustApply(t, s, u)
	if first.Duplicate {
		t.Fatalf("first delivery: Duplicate=true, want false")
	}

	// The same digest again, even carrying a different payload, is ignored.
	again := u
	again.Fields.Status = callcat.StatusEnded
	again.Snapshot = liveSnapshot(5)
	res := mustApply(t, s, again)

	if !res.Duplicate {
		t.Fatalf("Duplicate=false, want true")
	}
	if len(res.Events) != 0 {
		t.Fatalf("events=%v, want none", eventTypes(res.Events))
	}
	if res.Created {
		t.Fatalf("Created=true, want false")
	}
	if diff := cmp.Diff(first.Call, res.Call); diff != "" {
		t.Fatalf("duplicate ApplyResult.Call (-stored +got):\n%s", diff)
	}
	call, err := s.Call(ctx, id)
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if diff := cmp.Diff(first.Call, call); diff != "" {
		t.Fatalf("Call changed by a duplicate (-before +after):\n%s", diff)
	}
	if got := len(allEvents(t, s, id)); int64(got) != first.Call.LastSeq {
		t.Fatalf("stored events=%d, want %d", got, first.Call.LastSeq)
	}

	has, err := s.HasDelivery(ctx, u.Delivery.Digest)
	if err != nil {
		t.Fatalf("HasDelivery: %v", err)
	}
	if !has {
		t.Fatalf("HasDelivery(stored digest)=false, want true")
	}
	has, err = s.HasDelivery(ctx, strings.Repeat("cd", 32))
	if err != nil {
		t.Fatalf("HasDelivery: %v", err)
	}
	if has {
		t.Fatalf("HasDelivery(unknown digest)=true, want false")
	}
}

// testConcurrentWriters applies growing snapshots and status updates to a few
// calls from many goroutines at once, some of them duplicate deliveries, and
// checks that no update is lost or applied twice.
func testConcurrentWriters(t *testing.T, s callcat.Store) {
	ctx := t.Context()
	const (
		goroutines = 50
		calls      = 5
		steps      = 10
		maxLength  = 12
	)

	var (
		mu        sync.Mutex
		maxSize   = make(map[string]int)
		newCounts = make(map[string]int) // digest → non-duplicate applies
		errs      []error
		wg        sync.WaitGroup
	)
	for g := range goroutines {
		wg.Go(func() {
			id := fmt.Sprintf("call_concurrent_%d", g%calls)
			for step := range steps {
				// A size sequence that differs per goroutine, so snapshots
				// arrive out of order and some repeat.
				n := 1 + (g*7+step*5)%maxLength
				status := callcat.StatusRegistered
				if n >= 4 {
					status = callcat.StatusOngoing
				}
				u := snapshotUpdate(id, status, liveSnapshot(n))
				digest := fmt.Sprintf("%s-%d", id, n)
				u.Delivery = &callcat.Delivery{Digest: digest, Event: "transcript_updated", CallID: id}

				res, err := s.Apply(ctx, u)

				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else if !res.Duplicate {
					newCounts[digest]++
				}
				maxSize[id] = max(maxSize[id], n)
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	for _, err := range errs {
		t.Errorf("Apply: %v", err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	for digest, n := range newCounts {
		if n != 1 {
			t.Errorf("delivery %s applied %d times, want 1", digest, n)
		}
	}

	for c := range calls {
		id := fmt.Sprintf("call_concurrent_%d", c)
		call, err := s.Call(ctx, id)
		if err != nil {
			t.Fatalf("Call(%s): %v", id, err)
		}
		events := allEvents(t, s, id)
		if int64(len(events)) != call.LastSeq {
			t.Fatalf("%s: %d events, want LastSeq %d", id, len(events), call.LastSeq)
		}
		for i, ev := range events {
			if ev.Seq != int64(i+1) {
				t.Fatalf("%s: event %d has Seq %d, want %d", id, i, ev.Seq, i+1)
			}
		}

		want := makeUtterances(maxSize[id])
		transcript := mustTranscript(t, s, id)
		if diff := cmp.Diff(want, transcript); diff != "" {
			t.Fatalf("%s: Transcript (-want +got):\n%s", id, diff)
		}
		if call.UtteranceCount != len(want) {
			t.Fatalf("%s: UtteranceCount=%d, want %d", id, call.UtteranceCount, len(want))
		}
		if call.Status != callcat.StatusOngoing {
			t.Fatalf("%s: Status=%q, want ongoing", id, call.Status)
		}

		// Replaying the events must rebuild the stored transcript.
		if diff := cmp.Diff(utteranceData(want), replayEvents(t, events)); diff != "" {
			t.Fatalf("%s: transcript replayed from events (-want +got):\n%s", id, diff)
		}
	}
}

func testCallsStatusFilter(t *testing.T, s callcat.Store) {
	ctx := t.Context()
	byStatus := map[callcat.Status]string{
		callcat.StatusRegistered:   "call_registered",
		callcat.StatusOngoing:      "call_ongoing",
		callcat.StatusEnded:        "call_ended",
		callcat.StatusNotConnected: "call_not_connected",
		callcat.StatusError:        "call_error",
		"":                         "call_no_status",
	}
	for status, id := range byStatus {
		mustApply(t, s, statusUpdate(id, status))
	}

	tests := []struct {
		filter callcat.StatusFilter
		want   []string
	}{
		{callcat.FilterLive, []string{"call_no_status", "call_ongoing", "call_registered"}},
		{callcat.FilterEnded, []string{"call_ended", "call_error", "call_not_connected"}},
		{callcat.FilterAll, sortedValues(byStatus)},
		{"", sortedValues(byStatus)},
	}
	for _, tc := range tests {
		page, err := s.Calls(ctx, callcat.CallFilter{Status: tc.filter})
		if err != nil {
			t.Fatalf("Calls(%q): %v", tc.filter, err)
		}
		got := callIDs(page.Calls)
		slices.Sort(got)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Fatalf("Calls(%q) ids (-want +got):\n%s", tc.filter, diff)
		}
		if page.NextCursor != "" {
			t.Fatalf("Calls(%q) NextCursor=%q, want empty on the only page", tc.filter, page.NextCursor)
		}
	}

	_, err := s.Calls(ctx, callcat.CallFilter{Status: "bogus"})
	if !errors.Is(err, callcat.ErrInvalid) {
		t.Fatalf("Calls(bogus) err=%v, want ErrInvalid", err)
	}
}

func testCallsNewestFirst(t *testing.T, s callcat.Store) {
	ctx := t.Context()
	var created []callcat.Call
	for i := range 6 {
		res := mustApply(t, s, statusUpdate(fmt.Sprintf("call_order_%d", i), callcat.StatusOngoing))
		created = append(created, res.Call)
	}

	page, err := s.Calls(ctx, callcat.CallFilter{})
	if err != nil {
		t.Fatalf("Calls: %v", err)
	}
	if len(page.Calls) != len(created) {
		t.Fatalf("len(Calls)=%d, want %d", len(page.Calls), len(created))
	}
	for i := 1; i < len(page.Calls); i++ {
		if !newerFirst(page.Calls[i-1], page.Calls[i]) {
			t.Fatalf("Calls[%d]=(%v, %s) before Calls[%d]=(%v, %s), want newest first",
				i-1, page.Calls[i-1].CreatedAt, page.Calls[i-1].ID, i, page.Calls[i].CreatedAt, page.Calls[i].ID)
		}
	}

	// Calls created one after the other come back in reverse order, unless
	// the store's clock did not advance between two of them.
	want := callIDs(created)
	slices.Reverse(want)
	if distinctTimes(created) {
		if diff := cmp.Diff(want, callIDs(page.Calls)); diff != "" {
			t.Fatalf("Calls ids (-want +got):\n%s", diff)
		}
	}
}

func testCallsPagination(t *testing.T, s callcat.Store) {
	ctx := t.Context()
	const existing = 23
	statuses := make(map[string]callcat.Status, existing)
	for i := range existing {
		id := fmt.Sprintf("call_page_%02d", i)
		status := callcat.StatusOngoing
		if i%3 == 0 {
			status = callcat.StatusEnded
		}
		mustApply(t, s, statusUpdate(id, status))
		statuses[id] = status
	}

	for _, filter := range []callcat.StatusFilter{callcat.FilterAll, callcat.FilterLive, callcat.FilterEnded} {
		seen := make(map[string]int)
		cursor := ""
		inserted := 0
		for pages := 0; ; pages++ {
			if pages > existing {
				t.Fatalf("%s: more than %d pages, the cursor does not advance", filter, existing)
			}
			page, err := s.Calls(ctx, callcat.CallFilter{Status: filter, Limit: 5, Cursor: cursor})
			if err != nil {
				t.Fatalf("%s: Calls(page %d): %v", filter, pages, err)
			}
			if len(page.Calls) > 5 {
				t.Fatalf("%s: page %d has %d calls, want at most 5", filter, pages, len(page.Calls))
			}
			for i, c := range page.Calls {
				seen[c.ID]++
				if i > 0 && !newerFirst(page.Calls[i-1], c) {
					t.Fatalf("%s: page %d is not newest first at %d", filter, pages, i)
				}
			}

			// New calls arriving between pages must not shift the next page.
			for range 2 {
				id := fmt.Sprintf("call_page_new_%s_%d", filter, inserted)
				mustApply(t, s, statusUpdate(id, callcat.StatusOngoing))
				inserted++
			}

			if page.NextCursor == "" {
				break
			}
			cursor = page.NextCursor
		}

		for id, n := range seen {
			if n != 1 {
				t.Fatalf("%s: %s seen %d times, want once", filter, id, n)
			}
		}
		for id, status := range statuses {
			if matches(filter, status) && seen[id] != 1 {
				t.Fatalf("%s: %s seen %d times, want once", filter, id, seen[id])
			}
		}
		for id := range seen {
			status, ok := statuses[id]
			if ok && !matches(filter, status) {
				t.Fatalf("%s: %s with status %q does not match the filter", filter, id, status)
			}
		}
	}
}

func testCallsLimit(t *testing.T, s callcat.Store) {
	ctx := t.Context()
	total := callcat.MaxPageSize + 1
	for i := range total {
		mustApply(t, s, statusUpdate(fmt.Sprintf("call_limit_%03d", i), callcat.StatusOngoing))
	}

	tests := []struct {
		limit int
		want  int
	}{
		{0, callcat.DefaultPageSize},
		{-3, 1},
		{1, 1},
		{7, 7},
		{callcat.MaxPageSize, callcat.MaxPageSize},
		{callcat.MaxPageSize * 10, callcat.MaxPageSize},
	}
	for _, tc := range tests {
		page, err := s.Calls(ctx, callcat.CallFilter{Limit: tc.limit})
		if err != nil {
			t.Fatalf("Calls(limit=%d): %v", tc.limit, err)
		}
		if len(page.Calls) != tc.want {
			t.Fatalf("Calls(limit=%d) returned %d calls, want %d", tc.limit, len(page.Calls), tc.want)
		}
		if page.NextCursor == "" {
			t.Fatalf("Calls(limit=%d) NextCursor is empty, want a next page", tc.limit)
		}
	}

	page, err := s.Calls(ctx, callcat.CallFilter{Limit: callcat.MaxPageSize})
	if err != nil {
		t.Fatalf("Calls: %v", err)
	}
	last, err := s.Calls(ctx, callcat.CallFilter{Limit: callcat.MaxPageSize, Cursor: page.NextCursor})
	if err != nil {
		t.Fatalf("Calls(second page): %v", err)
	}
	if len(last.Calls) != 1 {
		t.Fatalf("second page has %d calls, want 1", len(last.Calls))
	}
	if last.NextCursor != "" {
		t.Fatalf("last page NextCursor=%q, want empty", last.NextCursor)
	}
}

func testCallsBadCursor(t *testing.T, s callcat.Store) {
	mustApply(t, s, statusUpdate("call_cursor", callcat.StatusOngoing))
	for _, cursor := range []string{"!!!", "bm90IGEgY3Vyc29y", "%%%"} {
		_, err := s.Calls(t.Context(), callcat.CallFilter{Cursor: cursor})
		if !errors.Is(err, callcat.ErrInvalid) {
			t.Fatalf("Calls(cursor=%q) err=%v, want ErrInvalid", cursor, err)
		}
	}
}

func testLiveCalls(t *testing.T, s callcat.Store) {
	ctx := t.Context()
	for _, u := range []callcat.Update{
		statusUpdate("call_live_registered", callcat.StatusRegistered),
		statusUpdate("call_live_ended", callcat.StatusEnded),
		statusUpdate("call_live_ongoing", callcat.StatusOngoing),
		statusUpdate("call_live_error", callcat.StatusError),
		statusUpdate("call_live_none", ""),
		statusUpdate("call_live_not_connected", callcat.StatusNotConnected),
	} {
		mustApply(t, s, u)
	}

	live, err := s.LiveCalls(ctx, 100)
	if err != nil {
		t.Fatalf("LiveCalls: %v", err)
	}
	got := callIDs(live)
	slices.Sort(got)
	want := []string{"call_live_none", "call_live_ongoing", "call_live_registered"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("LiveCalls ids (-want +got):\n%s", diff)
	}
	for i := 1; i < len(live); i++ {
		if !newerFirst(live[i], live[i-1]) {
			t.Fatalf("LiveCalls[%d]=%s before LiveCalls[%d]=%s, want oldest first", i-1, live[i-1].ID, i, live[i].ID)
		}
	}

	one, err := s.LiveCalls(ctx, 1)
	if err != nil {
		t.Fatalf("LiveCalls(1): %v", err)
	}
	if len(one) != 1 || one[0].ID != live[0].ID {
		t.Fatalf("LiveCalls(1)=%v, want [%s]", callIDs(one), live[0].ID)
	}

	mustApply(t, s, statusUpdate("call_live_ongoing", callcat.StatusEnded))
	live, err = s.LiveCalls(ctx, 100)
	if err != nil {
		t.Fatalf("LiveCalls: %v", err)
	}
	got = callIDs(live)
	slices.Sort(got)
	want = []string{"call_live_none", "call_live_registered"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("LiveCalls ids after ending one (-want +got):\n%s", diff)
	}
}

func testNotFound(t *testing.T, s callcat.Store) {
	ctx := t.Context()
	_, err := s.Call(ctx, "call_missing")
	if !errors.Is(err, callcat.ErrNotFound) {
		t.Fatalf("Call err=%v, want ErrNotFound", err)
	}
	_, err = s.Transcript(ctx, "call_missing")
	if !errors.Is(err, callcat.ErrNotFound) {
		t.Fatalf("Transcript err=%v, want ErrNotFound", err)
	}

	mustApply(t, s, statusUpdate("call_silent", callcat.StatusRegistered))
	transcript, err := s.Transcript(ctx, "call_silent")
	if err != nil {
		t.Fatalf("Transcript(call without utterances): %v", err)
	}
	if transcript == nil {
		t.Fatalf("Transcript=nil, want an empty non-nil slice")
	}
	if len(transcript) != 0 {
		t.Fatalf("len(Transcript)=%d, want 0", len(transcript))
	}
}
