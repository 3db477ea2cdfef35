package main

import (
	"context"
	"errors"
)

// runGet is being written (placeholder so the binary builds meanwhile).
func runGet(context.Context, []string) error { return errors.New("get: not available in this build") }
