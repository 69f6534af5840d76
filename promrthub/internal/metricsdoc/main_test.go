package main

import (
	"bytes"
	"os"
	"testing"

	"github.com/org/rthub/promrthub"
)

const docPath = "../../../docs/metrics.md"

// TestReferenceUpToDate fails when docs/metrics.md is not what go generate
// writes from promrthub.Metrics.
func TestReferenceUpToDate(t *testing.T) {
	got, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, render()) {
		t.Errorf("docs/metrics.md is stale: run (cd promrthub && go generate)")
	}
}

// TestEverySourceHasASection: no metric is left out of the reference.
func TestEverySourceHasASection(t *testing.T) {
	known := map[string]bool{}
	for _, s := range sources {
		known[s.key] = true
	}
	for _, m := range promrthub.Metrics() {
		if !known[m.Source] {
			t.Errorf("%s: source %q has no section", m.Name, m.Source)
		}
	}
}
