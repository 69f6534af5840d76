package admin

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/org/rthub"
)

// This file holds the endpoints that read: stats, rooms, presence, history,
// refusals and actions.

// statsResponse is the body of GET /stats.
type statsResponse struct {
	Time   time.Time   `json:"time"`
	Hub    rthub.Stats `json:"hub"`
	Broker any         `json:"broker,omitempty"`
}

func (h *Handler) stats(w http.ResponseWriter, r *http.Request, _ string) {
	resp := statsResponse{Time: time.Now().UTC(), Hub: h.hub.Stats()}
	if h.opts.BrokerStats != nil {
		resp.Broker = h.opts.BrokerStats()
	}
	writeJSON(w, http.StatusOK, resp)
}

// roomsResponse is the body of GET /rooms.
type roomsResponse struct {
	Rooms     []rthub.RoomInfo `json:"rooms"`
	Total     int              `json:"total"`
	Truncated bool             `json:"truncated"`
}

func (h *Handler) rooms(w http.ResponseWriter, r *http.Request, _ string) {
	limit, err := queryInt(r, "limit", MaxRooms, MaxRooms)
	if err != nil {
		h.fail(w, r, "", "rooms", err)
		return
	}
	all := h.hub.RoomInfos()
	resp := roomsResponse{Rooms: all, Total: len(all)}
	if len(all) > limit {
		resp.Rooms, resp.Truncated = all[:limit], true
	}
	if resp.Rooms == nil {
		resp.Rooms = []rthub.RoomInfo{}
	}
	writeJSON(w, http.StatusOK, resp)
}

func (h *Handler) presence(w http.ResponseWriter, r *http.Request, actor string) {
	room, err := queryRoom(r)
	if err != nil {
		h.fail(w, r, actor, "presence", err)
		return
	}
	p, err := h.hub.Presence(r.Context(), room)
	if errors.Is(err, rthub.ErrBadRequest) {
		writeError(w, http.StatusNotFound, "presence_off", "presence is not enabled in this room")
		return
	}
	if err != nil {
		h.fail(w, r, actor, "presence", err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// historyEntry is one publication in GET /history.
type historyEntry struct {
	Offset uint64          `json:"offset"`
	Epoch  string          `json:"epoch"`
	Event  string          `json:"event"`
	CID    string          `json:"cid,omitempty"`
	Key    string          `json:"key,omitempty"`
	Data   json.RawMessage `json:"data"`
}

// historyResponse is the body of GET /history.
type historyResponse struct {
	Room     string               `json:"room"`
	Position rthub.StreamPosition `json:"position"`
	// Since is the position to ask from next time, to tail the room.
	Since string `json:"since"`
	// Reset is true when the since asked for is no longer kept: the
	// publications are the newest instead, and some were missed.
	Reset        bool           `json:"reset"`
	Publications []historyEntry `json:"publications"`
}

func (h *Handler) history(w http.ResponseWriter, r *http.Request, actor string) {
	room, err := queryRoom(r)
	if err == nil {
		var limit int
		limit, err = queryInt(r, "limit", DefaultHistory, rthub.MaxHistoryRead)
		if err == nil {
			var since rthub.StreamPosition
			since, err = parsePosition(r.URL.Query().Get("since"))
			if err == nil {
				h.serveHistory(w, r, actor, room, since, limit)
				return
			}
		}
	}
	h.fail(w, r, actor, "history", err)
}

func (h *Handler) serveHistory(w http.ResponseWriter, r *http.Request, actor, room string, since rthub.StreamPosition, limit int) {
	ctx := r.Context()
	pubs, pos, err := h.hub.RoomHistory(ctx, room, since, limit)
	reset := false
	if errors.Is(err, rthub.ErrUnrecoverable) {
		reset = true
		pubs, pos, err = h.hub.RoomHistory(ctx, room, rthub.StreamPosition{}, limit)
	}
	if err != nil {
		h.fail(w, r, actor, "history", err)
		return
	}
	resp := historyResponse{Room: room, Position: pos, Reset: reset, Publications: make([]historyEntry, 0, len(pubs))}
	next := since
	if reset || since.IsZero() {
		next = pos
	}
	for _, p := range pubs {
		resp.Publications = append(resp.Publications, h.entry(p))
		next = p.Position()
	}
	if next.Offset > 0 || next.Epoch != "" {
		resp.Since = next.String()
	}
	writeJSON(w, http.StatusOK, resp)
}

// entry decodes a publication's event for GET /history, redacted.
func (h *Handler) entry(p rthub.Publication) historyEntry {
	e := historyEntry{Offset: p.Offset, Epoch: p.Epoch, Key: p.Key}
	var ev struct {
		Event string          `json:"event"`
		CID   string          `json:"cid"`
		Data  json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(p.Data, &ev); err != nil {
		e.Data = json.RawMessage(`"[undecodable]"`)
		return e
	}
	e.Event, e.CID, e.Data = ev.Event, ev.CID, Redact(ev.Data, h.opts.Redact)
	return e
}

func (h *Handler) refusals(w http.ResponseWriter, r *http.Request, actor string) {
	if h.opts.Refusals == nil {
		writeError(w, http.StatusNotFound, "not_enabled", "no refusal log configured (Options.Refusals)")
		return
	}
	limit, err := queryInt(r, "limit", max(h.opts.Refusals.ring.size, 1), max(h.opts.Refusals.ring.size, 1))
	if err != nil {
		h.fail(w, r, actor, "refusals", err)
		return
	}
	recs, total := h.opts.Refusals.Recent(limit)
	writeJSON(w, http.StatusOK, map[string]any{"refusals": recs, "total": total})
}

func (h *Handler) actionList(w http.ResponseWriter, r *http.Request, actor string) {
	limit, err := queryInt(r, "limit", max(h.actions.size, 1), max(h.actions.size, 1))
	if err != nil {
		h.fail(w, r, actor, "actions", err)
		return
	}
	acts, total := h.actions.recent(limit)
	writeJSON(w, http.StatusOK, map[string]any{"actions": acts, "total": total})
}

// fail answers err with its status and code, and logs failures that are not
// the request's fault.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, actor, op string, err error) {
	status, code := statusOf(err)
	msg := ""
	switch {
	case status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge || status == http.StatusNotFound:
		msg = err.Error() // our own wording and the hub's: no secret in them
	case status >= 500:
		h.log.LogAttrs(r.Context(), slog.LevelWarn, "rthub admin: failed", slog.String("op", op),
			slog.String("actor", actor), slog.String("code", code), slog.Any("err", err))
	}
	writeError(w, status, code, msg)
}

// statusOf maps an error to an HTTP status and an error code.
func statusOf(err error) (int, string) {
	switch {
	case errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge, "too_large"
	case errors.Is(err, errBadRequest):
		return http.StatusBadRequest, "bad_request"
	case errors.Is(err, rthub.ErrBadRoom), errors.Is(err, rthub.ErrBadEvent),
		errors.Is(err, rthub.ErrBadPayload), errors.Is(err, rthub.ErrBadRequest),
		errors.Is(err, rthub.ErrHeaderTooLarge):
		return http.StatusBadRequest, rthub.ErrorCode(err)
	case errors.Is(err, rthub.ErrNotFound):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, rthub.ErrTooManyRevocations):
		return http.StatusServiceUnavailable, "too_many_revocations"
	case errors.Is(err, rthub.ErrHubClosed):
		return http.StatusServiceUnavailable, "shutting_down"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, "timeout"
	}
	return http.StatusServiceUnavailable, "unavailable"
}
