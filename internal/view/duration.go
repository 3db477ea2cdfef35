package view

import (
	"fmt"
	"time"
)

// HumanDuration is kubectl's age format (k8s.io/apimachinery's
// duration.HumanDuration): whole seconds under two minutes ("105s"),
// minutes and seconds under ten minutes ("8m20s", "8m"), minutes under
// three hours ("72m"), hours and minutes under eight hours ("3h5m"), hours
// under two days ("36h"), days and hours under eight days ("2d3h"), days
// under two years ("300d"), years and days under eight years ("2y10d"),
// then years. A small negative skew (down to -1s) reads "0s"; more is
// "<invalid>".
func HumanDuration(d time.Duration) string {
	if seconds := int(d.Seconds()); seconds < -1 {
		return "<invalid>"
	} else if seconds < 0 {
		return "0s"
	} else if seconds < 60*2 {
		return fmt.Sprintf("%ds", seconds)
	}
	minutes := int(d / time.Minute)
	if minutes < 10 {
		s := int(d/time.Second) % 60
		if s == 0 {
			return fmt.Sprintf("%dm", minutes)
		}
		return fmt.Sprintf("%dm%ds", minutes, s)
	} else if minutes < 60*3 {
		return fmt.Sprintf("%dm", minutes)
	}
	hours := int(d / time.Hour)
	switch {
	case hours < 8:
		m := int(d/time.Minute) % 60
		if m == 0 {
			return fmt.Sprintf("%dh", hours)
		}
		return fmt.Sprintf("%dh%dm", hours, m)
	case hours < 48:
		return fmt.Sprintf("%dh", hours)
	case hours < 24*8:
		h := hours % 24
		if h == 0 {
			return fmt.Sprintf("%dd", hours/24)
		}
		return fmt.Sprintf("%dd%dh", hours/24, h)
	case hours < 24*365*2:
		return fmt.Sprintf("%dd", hours/24)
	case hours < 24*365*8:
		dy := (hours / 24) % 365
		if dy == 0 {
			return fmt.Sprintf("%dy", hours/24/365)
		}
		return fmt.Sprintf("%dy%dd", hours/24/365, dy)
	}
	return fmt.Sprintf("%dy", hours/24/365)
}

// Since is the age of ts at now as kubectl prints it; "<unknown>" for a
// zero time (kubectl's translateTimestampSince).
func Since(ts, now time.Time) string {
	if ts.IsZero() {
		return "<unknown>"
	}
	return HumanDuration(now.Sub(ts))
}
