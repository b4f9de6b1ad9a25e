package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callcat/callcat/internal/callcat"
	"github.com/callcat/callcat/internal/store/postgres"
)

// allTables lists every table that a test may have written to.
const allTables = "calls, utterances, events, webhook_deliveries, call_leases, idempotency_keys"

// openDB opens a DB on the test database and closes it when the test ends.
func openDB(t testing.TB, opts postgres.Options) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), postgres.DSN(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

// openClean opens a DB on the test database after emptying every table, so
// the test starts from an empty store. Tests in this package do not run in
// parallel.
func openClean(t testing.TB, opts postgres.Options) *postgres.DB {
	t.Helper()
	db := openDB(t, opts)
	mustExec(t, db, "TRUNCATE "+allTables)
	return db
}

// mustExec runs SQL of the test's own on db's pool.
func mustExec(t testing.TB, db *postgres.DB, sql string, args ...any) {
	t.Helper()
	if _, err := postgres.Pool(db).Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("exec %s: %v", sql, err)
	}
}

// dbNow returns the database clock.
func dbNow(t testing.TB, db *postgres.DB) time.Time {
	t.Helper()
	var now time.Time
	if err := postgres.Pool(db).QueryRow(context.Background(), `SELECT now()`).Scan(&now); err != nil {
		t.Fatalf("select now(): %v", err)
	}
	return now
}

// withParam returns dsn with one more connection parameter.
func withParam(t testing.TB, dsn, key, value string) string {
	t.Helper()
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return dsn + " " + key + "=" + value
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("parse DSN: %v", err)
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// makeUtterances returns the first n utterances of a conversation that
// alternates agent and user, each with words words. Every call returns equal
// values, so a snapshot of n utterances is a prefix of one of n+1.
func makeUtterances(n, words int) []callcat.Utterance {
	utterances := make([]callcat.Utterance, n)
	for i := range utterances {
		role := callcat.RoleAgent
		if i%2 == 1 {
			role = callcat.RoleUser
		}
		u := callcat.Utterance{Index: i, Role: role}
		for j := range words {
			text := fmt.Sprintf(" word%d", j)
			start := float64(i)*5 + float64(j)*0.3
			u.Words = append(u.Words, callcat.Word{Word: text, Start: start, End: start + 0.25})
			u.Content += text
		}
		utterances[i] = u
	}
	return utterances
}

// snapshotUpdate returns an ongoing call's update carrying the first n
// utterances of makeUtterances.
func snapshotUpdate(id string, n, words int, takenAt int64) callcat.Update {
	return callcat.Update{
		Fields:   callcat.CallFields{ID: id, Status: callcat.StatusOngoing},
		Snapshot: &callcat.Snapshot{Utterances: makeUtterances(n, words), TakenAt: takenAt},
	}
}

// statusUpdate returns an update that carries only an id and a status.
func statusUpdate(id string, status callcat.Status) callcat.Update {
	return callcat.Update{Fields: callcat.CallFields{ID: id, Status: status}}
}

func mustApply(t testing.TB, db *postgres.DB, u callcat.Update) callcat.ApplyResult {
	t.Helper()
	res, err := db.Apply(context.Background(), u)
	if err != nil {
		t.Fatalf("Apply(%s): %v", u.Fields.ID, err)
	}
	return res
}

// allEvents reads every stored event of a call, a page at a time.
func allEvents(t testing.TB, db *postgres.DB, id string) []callcat.Event {
	t.Helper()
	var events []callcat.Event
	after := int64(0)
	for {
		page, err := db.Events(context.Background(), id, after, postgres.MaxEventLimit)
		if err != nil {
			t.Fatalf("Events(%s, after=%d): %v", id, after, err)
		}
		if len(page) == 0 {
			return events
		}
		events = append(events, page...)
		after = page[len(page)-1].Seq
	}
}

func eventTypes(events []callcat.Event) []callcat.EventType {
	types := make([]callcat.EventType, len(events))
	for i, ev := range events {
		types[i] = ev.Type
	}
	return types
}

// replayEvents rebuilds a transcript from utterance and truncate events the
// way a stream client does.
func replayEvents(t testing.TB, events []callcat.Event) []callcat.UtteranceData {
	t.Helper()
	var transcript []callcat.UtteranceData
	for _, ev := range events {
		switch ev.Type {
		case callcat.EventUtterance:
			var data callcat.UtteranceData
			if err := json.Unmarshal(ev.Data, &data); err != nil {
				t.Fatalf("event %d: decode %s: %v", ev.Seq, ev.Data, err)
			}
			switch {
			case data.Index < len(transcript):
				transcript[data.Index] = data
			case data.Index == len(transcript):
				transcript = append(transcript, data)
			default:
				t.Fatalf("event %d: utterance index %d skips past length %d", ev.Seq, data.Index, len(transcript))
			}
		case callcat.EventTruncate:
			var data callcat.TruncateData
			if err := json.Unmarshal(ev.Data, &data); err != nil {
				t.Fatalf("event %d: decode %s: %v", ev.Seq, ev.Data, err)
			}
			transcript = transcript[:data.UtteranceCount]
		}
	}
	return transcript
}

func utteranceData(utterances []callcat.Utterance) []callcat.UtteranceData {
	data := make([]callcat.UtteranceData, len(utterances))
	for i, u := range utterances {
		data[i] = callcat.UtteranceData{Index: u.Index, Role: u.Role, Content: u.Content}
	}
	return data
}

// gatherValues returns every counter and gauge of reg as
// "name{label=value}" and the sample count of every histogram as
// "name_count".
func gatherValues(t testing.TB, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	values := make(map[string]float64)
	for _, family := range families {
		for _, m := range family.GetMetric() {
			if h := m.GetHistogram(); h != nil {
				values[family.GetName()+"_count"] = float64(h.GetSampleCount())
				continue
			}
			labels := make([]string, 0, len(m.GetLabel()))
			for _, label := range m.GetLabel() {
				labels = append(labels, label.GetName()+"="+label.GetValue())
			}
			name := family.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.GetCounter() != nil:
				values[name] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				values[name] = m.GetGauge().GetValue()
			}
		}
	}
	return values
}

// syncBuffer is a strings.Builder for log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
