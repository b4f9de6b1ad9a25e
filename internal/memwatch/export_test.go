package memwatch

import "fmt"

// AddSample stores s as if Sample had read it.
func (w *Watcher) AddSample(s Sample) { w.addSample(s) }

// AddSampleMissing stores s and records that the field with JSON name
// fieldName could not be read, for reason.
func (w *Watcher) AddSampleMissing(s Sample, fieldName string, reason error) {
	var iss issues
	for f, name := range fieldNames {
		if name == fieldName {
			iss[f] = reason
			w.readMu.Lock()
			defer w.readMu.Unlock()
			w.store(s, &iss)
			return
		}
	}
	panic(fmt.Sprintf("unknown field %q", fieldName))
}
