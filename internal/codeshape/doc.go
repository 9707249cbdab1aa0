// Package codeshape holds the repository-wide code-shape check: a test that
// parses every Go file of the module (third_party/ excluded) and fails on a
// hand-written, non-test file over MaxFileLines lines, a function outside
// tests over MaxFuncLines lines, or a package without a package doc comment.
// It has no code of its own beyond the limits; the check is the test.
package codeshape

// The limits the check enforces.
const (
	// MaxFileLines is the most lines a hand-written, non-test Go file may have.
	MaxFileLines = 600
	// MaxFuncLines is the most lines (from "func" to the closing brace) a
	// function or method outside tests may have.
	MaxFuncLines = 80
)
