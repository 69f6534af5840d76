package rthub

import (
	"bytes"
	stdflate "compress/flate"
	"io"
)

// inflateStd decompresses a permessage-deflate message body with the
// standard library's decoder (independent of the server's klauspost one).
func inflateStd(body []byte) ([]byte, error) {
	fr := stdflate.NewReader(io.MultiReader(bytes.NewReader(body), bytes.NewReader(deflateEnd)))
	defer fr.Close()
	return io.ReadAll(fr)
}
