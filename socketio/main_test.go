package socketio_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(fleetEnv); spec != "" {
		runFleet(spec) // a benchmark's client process; never returns
	}
	goleak.VerifyTestMain(m)
}
