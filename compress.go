package rthub

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws/wsflate"
	"github.com/klauspost/compress/flate"
)

// CompressionMode says whether the hub negotiates permessage-deflate (RFC 7692).
type CompressionMode uint8

const (
	// CompressionAuto, the default, accepts permessage-deflate when a client
	// offers it, always with no context takeover in both directions: that is what
	// lets one compressed frame serve every recipient of a broadcast, and it keeps
	// no 32 KiB compression window per connection.
	CompressionAuto CompressionMode = iota
	// CompressionDisabled never negotiates compression.
	CompressionDisabled
)

// CompressionOptions configures permessage-deflate.
type CompressionOptions struct {
	// Mode is CompressionAuto (default) or CompressionDisabled.
	Mode CompressionMode
	// Threshold is the smallest encoded message, in bytes, that is compressed.
	// Smaller messages are sent uncompressed even on compressing connections:
	// deflate saves little on them and costs CPU. Default 1024.
	Threshold int
	// Level is the flate level, 1 (fastest, default) to 9 (smallest). A broadcast
	// is compressed once whatever the number of recipients, so the level's cost is
	// paid per publish, not per delivery.
	Level int
}

func (o *CompressionOptions) setDefaults() error {
	if o.Threshold == 0 {
		o.Threshold = 1024
	}
	if o.Level == 0 {
		o.Level = 1
	}
	var errs []error
	if o.Mode > CompressionDisabled {
		errs = append(errs, fmt.Errorf("rthub: compression: unknown mode %d", o.Mode))
	}
	if o.Threshold < 0 {
		errs = append(errs, fmt.Errorf("rthub: compression: negative threshold %d", o.Threshold))
	}
	if o.Level < flate.BestSpeed || o.Level > flate.BestCompression {
		errs = append(errs, fmt.Errorf("rthub: compression: level %d outside 1..9", o.Level))
	}
	return errors.Join(errs...)
}

// deflateParams is what the hub accepts: no context takeover either way, so the
// hub keeps no per-connection window and can share compressed frames.
var deflateParams = wsflate.Parameters{
	ServerNoContextTakeover: true,
	ClientNoContextTakeover: true,
}

// negotiator runs the permessage-deflate negotiation of one handshake.
type negotiator struct {
	ext wsflate.Extension
}

func (n *negotiator) negotiate(opt httphead.Option) (httphead.Option, error) {
	// Without these, the zero Parameters declined every offer carrying
	// server_no_context_takeover and accepted the others without
	// client_no_context_takeover, letting clients use a context the hub's
	// per-message inflate does not keep.
	n.ext.Parameters = deflateParams
	accept, err := n.ext.Negotiate(opt)
	if err != nil {
		// An offer with an unknown or invalid parameter is declined (RFC 7692
		// §5), not a failed handshake (gobwas answered it with 500).
		return httphead.Option{}, nil
	}
	return accept, nil
}

func (n *negotiator) accepted() bool {
	_, ok := n.ext.Accepted()
	return ok
}

// deflateTail is the empty stored block that ends a flushed deflate stream; the
// extension strips it from every message (RFC 7692 §7.2.1).
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff}

// compressor compresses whole messages with pooled flate writers.
type compressor struct {
	pool sync.Pool // *flateWriter
}

type flateWriter struct {
	buf bytes.Buffer
	fw  *flate.Writer
}

func newCompressor(level int) *compressor {
	c := &compressor{}
	c.pool.New = func() any {
		w := &flateWriter{}
		fw, err := flate.NewWriter(&w.buf, level)
		if err != nil {
			panic(err) // level validated in New
		}
		w.fw = fw
		return w
	}
	return c
}

// compress returns payload compressed as one permessage-deflate message body
// (the tail removed), appended to dst.
func (c *compressor) compress(dst, payload []byte) ([]byte, error) {
	w := c.pool.Get().(*flateWriter)
	defer c.pool.Put(w)
	w.buf.Reset()
	w.fw.Reset(&w.buf)
	if _, err := w.fw.Write(payload); err != nil {
		return dst, err
	}
	if err := w.fw.Flush(); err != nil {
		return dst, err
	}
	out := w.buf.Bytes()
	out = bytes.TrimSuffix(out, deflateTail)
	return append(dst, out...), nil
}

// inflateReaders pools flate readers for inbound messages.
var inflateReaders sync.Pool // io.ReadCloser that also implements flate.Resetter

// deflateEnd completes a message body so the flate reader sees a final block:
// the stripped tail, then an empty final stored block.
var deflateEnd = []byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

// inflate decompresses one permessage-deflate message body. It refuses output
// over limit bytes with [ErrMessageTooBig], so a small frame that inflates to
// gigabytes (a "zip bomb") costs at most limit bytes.
func inflate(body []byte, limit int64) ([]byte, error) {
	src := io.MultiReader(bytes.NewReader(body), bytes.NewReader(deflateEnd))
	var fr io.ReadCloser
	if v := inflateReaders.Get(); v != nil {
		fr = v.(io.ReadCloser)
		if err := fr.(flate.Resetter).Reset(src, nil); err != nil {
			return nil, err
		}
	} else {
		fr = flate.NewReader(src)
	}
	defer inflateReaders.Put(fr)
	var out bytes.Buffer
	n, err := out.ReadFrom(io.LimitReader(fr, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: bad deflate data", ErrBadRequest)
	}
	if n > limit {
		return nil, fmt.Errorf("%w: over %d bytes after inflating", ErrMessageTooBig, limit)
	}
	return out.Bytes(), nil
}
