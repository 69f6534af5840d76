package drill_test

import (
	"testing"

	"github.com/org/rthub/internal/doccheck"
)

//go:generate env RTHUB_UPDATE_DOCS=1 go test -run=^TestDocs$ .

// TestDocs checks this module's Markdown (none today: the drills are
// documented in docs/scaling.md, which the root module checks), so that a
// README added here is checked too: see internal/doccheck.
func TestDocs(t *testing.T) {
	doccheck.CheckModule(t)
}
