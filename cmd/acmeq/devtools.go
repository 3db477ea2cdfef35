//go:build dev

package main

// devTools reports that this binary has acmeq dev and acmeq bench (built
// with -tags dev).
const devTools = true
