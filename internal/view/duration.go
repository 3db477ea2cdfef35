package view

import (
	"time"

	"k8s.io/apimachinery/pkg/util/duration"
)

// Since is the age of ts at now as kubectl prints it
// (k8s.io/apimachinery's duration.HumanDuration: "105s", "8m20s", "72m",
// "3h5m", "2d3h", "2y10d"), and "<unknown>" for a zero time (kubectl's
// translateTimestampSince).
func Since(ts, now time.Time) string {
	if ts.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(ts))
}
