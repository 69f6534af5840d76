package rthub_test

import (
	"context"
	"fmt"
	"log"

	"github.com/org/rthub"
)

// A memory broker keeping the latest publication per key for device rooms:
// State returns them with the position they correspond to.
func ExampleMemoryBroker_State() {
	b, err := rthub.NewMemoryBroker(rthub.MemoryBrokerOptions{
		State: rthub.StatePolicy{Rules: []rthub.StateRule{
			{Pattern: "device:**", StateLimits: rthub.StateLimits{MaxKeys: 100}},
		}},
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	for _, m := range []rthub.Message{
		{Data: []byte(`{"t":20}`), Key: "temp"},
		{Data: []byte(`{"h":40}`), Key: "humidity"},
		{Data: []byte(`{"t":21}`), Key: "temp"},
		{Data: []byte(`{"note":"unkeyed"}`)},
	} {
		if _, err := b.Publish(ctx, "device:7", m); err != nil {
			log.Fatal(err)
		}
	}
	entries, pos, err := b.State(ctx, "device:7")
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range entries {
		fmt.Printf("%s = %s (offset %d)\n", p.Key, p.Data, p.Offset)
	}
	fmt.Println("position:", pos.Offset)
	// Output:
	// humidity = {"h":40} (offset 2)
	// temp = {"t":21} (offset 3)
	// position: 4
}
