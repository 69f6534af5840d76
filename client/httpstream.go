package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/org/rthub"
)

// This file holds the HTTP stream transport (docs/protocol.md §6), the
// fallback for networks where WebSocket does not get through, and the
// choice between the two ([Options].Transport).

// Transport says how the client connects.
type Transport uint8

const (
	// TransportWebSocket, the default, connects over WebSocket only.
	TransportWebSocket Transport = iota
	// TransportHTTPStream connects over the HTTP stream only: server
	// messages as Server-Sent Events down a GET, commands as POSTs, one at
	// a time and in order. A POST refused with 429 is sent again after its
	// Retry-After (at least 1 s, at most 30 s); any other refusal ends the
	// connection, which reconnects and resumes. The hub must enable it
	// (rthub.Options.HTTPStream).
	TransportHTTPStream
	// TransportAuto connects over WebSocket, and over the HTTP stream for
	// a minute after WebSocket failed more than once in a row (the
	// handshake failed, or the connection ended within 5 s of its welcome);
	// then it tries WebSocket again.
	TransportAuto
)

// Timing of TransportAuto.
const (
	autoShortLived = 5 * time.Second
	autoStayOnHTTP = time.Minute
	autoMaxFailed  = 1
)

// wire is what a connection needs of its transport; *websocket.Conn is one.
type wire interface {
	Read(ctx context.Context) (websocket.MessageType, []byte, error)
	Write(ctx context.Context, typ websocket.MessageType, p []byte) error
	Close(code websocket.StatusCode, reason string) error
	CloseNow() error
}

// useHTTP reports whether the next attempt connects over the HTTP stream.
func (c *Client) useHTTP() bool {
	switch c.opts.Transport {
	case TransportHTTPStream:
		return true
	case TransportAuto:
		c.mu.Lock()
		defer c.mu.Unlock()
		return time.Now().Before(c.httpUntil)
	}
	return false
}

// wsOutcome records how a WebSocket connection went for TransportAuto: ok
// is false for a failed handshake or a connection that ended soon after its
// welcome.
func (c *Client) wsOutcome(ok bool) {
	if c.opts.Transport != TransportAuto {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ok {
		c.wsFailed = 0
		return
	}
	if c.wsFailed++; c.wsFailed > autoMaxFailed {
		c.wsFailed = 0
		c.httpUntil = time.Now().Add(autoStayOnHTTP)
		c.log.Info("rthub/client: WebSocket keeps failing: using the HTTP stream", slog.Duration("for", autoStayOnHTTP))
	}
}

// streamWire is one HTTP stream: the GET's body, read event by event, and
// POSTs of commands, one at a time (the connection's writer is the only
// caller of Write).
type streamWire struct {
	hc      *http.Client
	url     string
	auth    string
	session string
	body    io.ReadCloser
	br      *bufio.Reader
	alive   func() // called for each keepalive comment
	limit   int64  // Options.MaxMessageSize: a longer event ends the stream
	cancel  context.CancelFunc
	once    sync.Once
}

// dialStream opens a stream at url (ws:// or http://) with hdr and reads its
// session event; ctx bounds the dial only.
func dialStream(ctx context.Context, hc *http.Client, url string, hdr http.Header, limit int64, alive func()) (*streamWire, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	url = "http" + strings.TrimPrefix(url, "ws")
	sctx, cancel := context.WithCancel(context.Background()) // the stream's life
	stop := context.AfterFunc(ctx, cancel)                   // until the head is in
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, url, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header = hdr.Clone()
	req.Header.Set("Accept", "text/event-stream")
	resp, err := hc.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		err := handshakeError(resp, nil)
		resp.Body.Close()
		cancel()
		return nil, err
	}
	s := &streamWire{hc: hc, url: url, auth: hdr.Get("Authorization"), body: resp.Body,
		br: bufio.NewReader(resp.Body), alive: alive, limit: limit, cancel: cancel}
	name, data, err := s.event()
	stop()
	if err == nil && name != "session" {
		err = fmt.Errorf("rthub/client: protocol: the stream did not start with its session")
	}
	if err != nil {
		s.CloseNow()
		return nil, err
	}
	s.session = string(data)
	return s, nil
}

// event reads the next event: its name ("" for a message) and data.
func (s *streamWire) event() (name string, data []byte, err error) {
	var lines [][]byte
	size := int64(0)
	for {
		line, err := s.br.ReadSlice('\n')
		for errors.Is(err, bufio.ErrBufferFull) {
			// A long line: read the rest of it, within the limit.
			if s.limit > 0 && size+int64(len(line)) > s.limit {
				return "", nil, websocket.ErrMessageTooBig
			}
			var more []byte
			more, err = s.br.ReadSlice('\n')
			line = append(bytes.Clone(line), more...)
		}
		if err != nil {
			return "", nil, err
		}
		if size += int64(len(line)); s.limit > 0 && size > s.limit+64 {
			return "", nil, websocket.ErrMessageTooBig
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			if lines == nil && name == "" {
				continue
			}
			return name, bytes.Join(lines, []byte("\n")), nil
		case line[0] == ':':
			if s.alive != nil {
				s.alive()
			}
		case bytes.HasPrefix(line, []byte("event:")):
			name = strings.TrimSpace(string(line[6:]))
		case bytes.HasPrefix(line, []byte("data:")):
			d := bytes.TrimPrefix(line[5:], []byte(" "))
			lines = append(lines, bytes.Clone(d))
		}
	}
}

// Read returns the next server message; the close event comes back as a
// websocket.CloseError, as on a WebSocket.
func (s *streamWire) Read(ctx context.Context) (websocket.MessageType, []byte, error) {
	stop := context.AfterFunc(ctx, func() { s.CloseNow() })
	defer stop()
	name, data, err := s.event()
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil, ctx.Err()
		}
		return 0, nil, err
	}
	if name == "close" {
		var m struct {
			Code   int    `json:"code"`
			Reason string `json:"reason"`
		}
		_ = json.Unmarshal(data, &m)
		s.CloseNow()
		return 0, nil, websocket.CloseError{Code: websocket.StatusCode(m.Code), Reason: m.Reason}
	}
	return websocket.MessageText, data, nil
}

// Bounds of the wait before a POST refused with 429 is sent again.
const (
	minRetryWait = time.Second
	maxRetryWait = 30 * time.Second
)

// retryWait is how long to wait before sending again a POST refused with
// 429, given its Retry-After header (seconds or an HTTP date): what it asks
// for, at least minRetryWait (also without a usable header) and at most
// maxRetryWait.
func retryWait(h string, now time.Time) time.Duration {
	var d time.Duration
	if n, err := strconv.ParseInt(strings.TrimSpace(h), 10, 64); err == nil {
		d = time.Duration(min(max(n, 0), int64(maxRetryWait/time.Second))) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, minRetryWait), maxRetryWait)
}

// Write POSTs one command, each POST within writeTimeout; a POST refused
// with 429 is sent again after its Retry-After ([retryWait]), until ctx
// ends. The commands after it wait (the connection's writer is the only
// caller), so they reach the hub in order. Any other refusal (503
// included) is an error: the connection ends, and the client reconnects
// and resumes as on a WebSocket.
func (s *streamWire) Write(ctx context.Context, _ websocket.MessageType, p []byte) error {
	for {
		resp, err := s.post(ctx, p)
		if err != nil {
			return err
		}
		switch resp.StatusCode {
		case http.StatusAccepted:
			return nil
		case http.StatusTooManyRequests:
			t := time.NewTimer(retryWait(resp.Header.Get("Retry-After"), time.Now()))
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		default:
			return fmt.Errorf("rthub/client: command refused: HTTP %d", resp.StatusCode)
		}
	}
}

// post sends p in one POST, within writeTimeout, and returns its answer
// (its body read and closed).
func (s *streamWire) post(ctx context.Context, p []byte) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(p))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", s.auth)
	req.Header.Set(rthub.SessionHeader, s.session)
	req.Header.Set("Content-Type", "text/plain")
	resp, err := s.hc.Do(req)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return resp, nil
}

// Close ends the stream (there is no closing handshake).
func (s *streamWire) Close(websocket.StatusCode, string) error { return s.CloseNow() }

// CloseNow ends the stream.
func (s *streamWire) CloseNow() error {
	s.once.Do(func() {
		s.cancel()
		s.body.Close()
	})
	return nil
}
