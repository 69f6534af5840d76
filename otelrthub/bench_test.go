package otelrthub_test

import (
	"context"
	"testing"

	"github.com/org/rthub"
	"github.com/org/rthub/otelrthub"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// BenchmarkPublish measures a publish to a room with no members: the hub's
// own path (encode, broker), bare and wrapped. "off" is what a program
// that does not enable tracing runs (no wrapper: the rthub module has no
// tracing code); "noop" wraps with a no-op provider; "sampled" records
// every span (sampled, then dropped: no exporter).
//
//	go test -run '^$' -bench Publish -benchmem ./otelrthub
func BenchmarkPublish(b *testing.B) {
	hub, err := rthub.New(rthub.Options{Auth: rthub.AuthOptions{Keys: map[string]any{"": secret}}})
	if err != nil {
		b.Fatal(err)
	}
	defer hub.Close()
	sdk := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	defer sdk.Shutdown(context.Background())
	for _, bc := range []struct {
		name string
		pub  rthub.Publisher
	}{
		{"off", hub},
		{"noop", otelrthub.WrapPublisher(hub, otelrthub.PublishOptions{Options: otelrthub.Options{TracerProvider: noop.NewTracerProvider()}})},
		{"sampled", otelrthub.WrapPublisher(hub, otelrthub.PublishOptions{Options: otelrthub.Options{TracerProvider: sdk}})},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := bc.pub.Publish(ctx, "staff", "tick", 1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
