package drill_test

import (
	"os"
	"strings"
	"testing"

	"github.com/org/rthub/examples/drill"
)

// TestNginxSite checks that the drills run the shipped file with only the
// ports changed, and that docs/scaling.md shows that file as it is.
func TestNginxSite(t *testing.T) {
	site, err := drill.RenderSite([]string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"}, 9)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"    server 127.0.0.1:1 max_fails=0;\n    server 127.0.0.1:2 max_fails=0;\n    server 127.0.0.1:3 max_fails=0;\n    server 127.0.0.1:4 max_fails=0;\n",
		"    listen 127.0.0.1:9;\n",
	} {
		if !strings.Contains(site, want) {
			t.Errorf("rendered site lacks %q:\n%s", want, site)
		}
	}
	shipped := strings.Split(drill.NginxSite, "\n")
	rendered := strings.Split(site, "\n")
	if len(rendered) != len(shipped)+1 { // one node more
		t.Errorf("rendered site has %d lines, the shipped one %d: only the server lines and the port may change", len(rendered), len(shipped))
	}

	doc, err := os.ReadFile("../../docs/scaling.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```nginx\n"+drill.NginxSite+"```\n") {
		t.Error("docs/scaling.md does not show deploy/nginx-rthub.conf as it is: copy the file into its nginx block")
	}
}
