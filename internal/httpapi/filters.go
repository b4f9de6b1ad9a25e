package httpapi

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/callcat/callcat/internal/callcat"
)

// maxFilterBytes caps a text filter value; ids and numbers are far shorter.
const maxFilterBytes = 256

// parseFieldFilters reads the optional list filters of GET /v1/calls:
// agent_id, direction (inbound or outbound), number (an E.164 number that
// matches from_number or to_number), and from and to, the range of
// start_timestamp as RFC 3339 times or Unix milliseconds, from inclusive and
// to exclusive.
func parseFieldFilters(q url.Values, f *callcat.CallFilter) error {
	if v := q.Get("agent_id"); v != "" {
		if len(v) > maxFilterBytes || !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
			return fmt.Errorf("invalid agent_id: use at most %d bytes of UTF-8 text", maxFilterBytes)
		}
		f.AgentID = v
	}
	switch v := q.Get("direction"); v {
	case "":
	case "inbound", "outbound":
		f.Direction = v
	default:
		return fmt.Errorf("invalid direction %s: use inbound or outbound", strconv.Quote(v))
	}
	if v := q.Get("number"); v != "" {
		if !e164Pattern.MatchString(v) {
			return fmt.Errorf("invalid number %s: use an E.164 number such as +15550100001 (write + as %%2B)", strconv.Quote(v))
		}
		f.Number = v
	}
	for _, p := range []struct {
		name string
		dst  **int64
	}{{"from", &f.StartFrom}, {"to", &f.StartBefore}} {
		v := q.Get(p.name)
		if v == "" {
			continue
		}
		ms, err := parseTime(v)
		if err != nil {
			return fmt.Errorf("invalid %s %s: %v", p.name, strconv.Quote(v), err)
		}
		*p.dst = &ms
	}
	if f.StartFrom != nil && f.StartBefore != nil && *f.StartFrom >= *f.StartBefore {
		return errors.New("invalid range: from must be before to")
	}
	return nil
}

// parseTime returns an RFC 3339 time or a count of Unix milliseconds as Unix
// milliseconds.
func parseTime(v string) (int64, error) {
	if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
		if ms < 0 {
			return 0, errors.New("use a time after 1970")
		}
		return ms, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return 0, errors.New("use an RFC 3339 time such as 2026-03-01T12:00:00Z or Unix milliseconds")
	}
	return t.UnixMilli(), nil
}
