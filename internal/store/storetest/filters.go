package storetest

import (
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/callcat/callcat/internal/callcat"
)

// testCallsFieldFilters pages through each field filter two calls at a
// time, with new matching calls arriving between pages, and compares the
// ids seen with the stored calls that match, newest first. The calls that
// arrive during one case count for the cases after it.
func testCallsFieldFilters(t *testing.T, s callcat.Store) {
	ctx := t.Context()
	var stored []callcat.Call
	for i := range 12 {
		u := fullUpdate(fmt.Sprintf("call_filter_%02d", i))
		u.Fields.AgentID = []string{"agent_a", "agent_b"}[i%2]
		u.Fields.Direction = []string{"inbound", "outbound", "outbound"}[i%3]
		u.Fields.FromNumber = fmt.Sprintf("+1555010%04d", i%4)
		u.Fields.ToNumber = fmt.Sprintf("+1555020%04d", i%5)
		u.Fields.StartTimestamp = int64Pointer(int64(1000 * i))
		if i == 5 {
			u.Fields.StartTimestamp = nil
		}
		stored = append(stored, mustApply(t, s, u).Call)
	}

	cases := []struct {
		name   string
		filter callcat.CallFilter
		match  func(c callcat.Call) bool
	}{
		{"Agent", callcat.CallFilter{AgentID: "agent_b"}, func(c callcat.Call) bool { return c.AgentID == "agent_b" }},
		{"Direction", callcat.CallFilter{Direction: "inbound"}, func(c callcat.Call) bool { return c.Direction == "inbound" }},
		{"NumberFrom", callcat.CallFilter{Number: "+15550100001"}, func(c callcat.Call) bool { return c.FromNumber == "+15550100001" }},
		{"NumberTo", callcat.CallFilter{Number: "+15550200003"}, func(c callcat.Call) bool { return c.ToNumber == "+15550200003" }},
		{"StartRange", callcat.CallFilter{StartFrom: int64Pointer(3000), StartBefore: int64Pointer(9000)}, func(c callcat.Call) bool {
			return c.StartTimestamp != nil && *c.StartTimestamp >= 3000 && *c.StartTimestamp < 9000
		}},
		{"StartFrom", callcat.CallFilter{StartFrom: int64Pointer(0)}, func(c callcat.Call) bool { return c.StartTimestamp != nil }},
		{"Combined", callcat.CallFilter{Status: callcat.FilterLive, AgentID: "agent_a", Direction: "outbound"}, func(c callcat.Call) bool {
			return c.AgentID == "agent_a" && c.Direction == "outbound"
		}},
		{"NoMatch", callcat.CallFilter{AgentID: "agent_none"}, func(callcat.Call) bool { return false }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			slices.SortFunc(stored, func(a, b callcat.Call) int {
				if newerFirst(a, b) {
					return -1
				}
				return 1
			})
			var want []string
			for _, c := range stored {
				if tc.match(c) {
					want = append(want, c.ID)
				}
			}

			var got []string
			f := tc.filter
			f.Limit = 2
			for pages := 0; ; pages++ {
				if pages > len(stored) {
					t.Fatalf("more than %d pages, the cursor does not advance", len(stored))
				}
				page, err := s.Calls(ctx, f)
				if err != nil {
					t.Fatalf("Calls(page %d): %v", pages, err)
				}
				got = append(got, callIDs(page.Calls)...)

				// A matching call arriving between pages is newer than the
				// cursor, so it must not appear on a later page.
				u := fullUpdate(fmt.Sprintf("call_filter_new_%s_%d", tc.name, pages))
				u.Fields.AgentID, u.Fields.Direction = "agent_b", "inbound"
				stored = append(stored, mustApply(t, s, u).Call)

				if page.NextCursor == "" {
					break
				}
				f.Cursor = page.NextCursor
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("ids (-want +got):\n%s", diff)
			}
		})
	}
}
