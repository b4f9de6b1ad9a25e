//go:build race

package sqlite_test

// raceEnabled is true when the tests run under the race detector, which
// makes sync.Pool drop items at random and so adds allocations to code that
// pools buffers, such as encoding/json.
const raceEnabled = true
