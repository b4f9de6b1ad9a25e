package stream

import "time"

// CallKeys returns the number of keys in h's subscription map, which must be
// zero once every subscription is gone.
func CallKeys(h *Hub) int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.subs)
}

// SetNow replaces the clock that rate-limits the drop log.
func SetNow(h *Hub, now func() time.Time) {
	h.dropLog.mu.Lock()
	defer h.dropLog.mu.Unlock()
	h.now = now
}
