//go:build !race

package producer

// raceDetector is true when the tests run under the race detector, which
// makes every byte the decoder reads cost ten times more.
const raceDetector = false
