package rthub

import (
	"encoding/json"
	"fmt"
	"testing"
)

// BenchmarkEnvelope encodes one event's envelope the way a publish does
// (once per publication: the broker payload, then the frame with its
// stream position), against encoding/json marshalling the same envelope.
func BenchmarkEnvelope(b *testing.B) {
	for _, size := range []int{200, 2048} {
		data := benchPayload(size)
		b.Run(fmt.Sprintf("size=%d/rthub", size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			pos := StreamPosition{Offset: 123456, Epoch: "9c1f0a2b3c4d5e6f"}
			for b.Loop() {
				body := appendEventCID(make([]byte, 0, 64+len(data)), "", "sensor:data", "device:42", data)
				_ = textFrame(appendPosition(make([]byte, 0, len(body)+48), body, pos))
			}
		})
		b.Run(fmt.Sprintf("size=%d/encoding-json", size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				out, err := json.Marshal(eventMsg{"event", "sensor:data", "device:42", data, 123456, "9c1f0a2b3c4d5e6f"})
				if err != nil {
					b.Fatal(err)
				}
				_ = textFrame(out)
			}
		})
	}
}

// BenchmarkCompress compresses one realistic sensor payload as a broadcast
// does (once per publication, level 1, no context takeover) and reports the
// ratio of compressed to plain bytes.
func BenchmarkCompress(b *testing.B) {
	for _, size := range []int{1024, 2048, 16384} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			c := newCompressor(1)
			src := []byte(appendEvent(nil, "sensor:data", "device:42", benchPayload(size)))
			b.ReportAllocs()
			b.SetBytes(int64(len(src)))
			var out []byte
			for b.Loop() {
				var err error
				out, err = c.compress(out[:0], src)
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(out))/float64(len(src)), "ratio")
		})
	}
}
