package main

import (
	"testing"

	"github.com/org/rthub/internal/doccheck"
)

//go:generate env RTHUB_UPDATE_DOCS=1 go test -run=^TestDocs$ .

// TestDocs checks this module's Markdown (README.md, EVENTS.md): see
// internal/doccheck.
func TestDocs(t *testing.T) {
	doccheck.CheckModule(t)
}
