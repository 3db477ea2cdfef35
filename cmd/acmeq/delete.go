package main

import (
	"context"
	"errors"
)

// runDelete is being written (placeholder so the binary builds meanwhile).
func runDelete(context.Context, []string) error { return errors.New("delete: not available in this build") }
