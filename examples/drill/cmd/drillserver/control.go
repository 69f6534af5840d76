package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/org/rthub"
	"github.com/redis/rueidis"
)

// userStore is the drill application's user store: the current roles of a
// user are the fields of the Redis hash <prefix>roles:<subject>.
type userStore struct {
	c   rueidis.Client
	key string
}

func newUserStore(url, key string) (*userStore, error) {
	opt, err := rueidis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	opt.DisableCache = true
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, err
	}
	return &userStore{c: c, key: key}, nil
}

func (u *userStore) close() { u.c.Close() }

// roles is the hub's Options.Roles: the hash's fields, or the token's
// roles when the user has no hash.
func (u *userStore) roles(ctx context.Context, id *rthub.Identity) ([]string, error) {
	roles, err := u.c.Do(ctx, u.c.B().Hkeys().Key(u.key+id.Subject).Build()).AsStrSlice()
	if err != nil {
		return nil, err
	}
	if len(roles) == 0 {
		return id.Roles, nil
	}
	return roles, nil
}

type revokeRequest struct {
	Subject      string    `json:"subject"`
	TokenID      string    `json:"token_id"`
	IssuedBefore time.Time `json:"issued_before"`
	Reason       string    `json:"reason"`
}

type controlRequest struct {
	Subject string `json:"subject"`
	Kind    string `json:"kind"`
	Room    string `json:"room"`
	Reason  string `json:"reason"`
}

// controlAnswer is the body of /revoke and /control.
type controlAnswer struct {
	Result rthub.ControlResult `json:"result"`
	Error  string              `json:"error,omitempty"`
}

var kinds = map[string]rthub.UserActionKind{
	"disconnect": rthub.UserDisconnect, "join": rthub.UserJoin, "leave": rthub.UserLeave, "recheck": rthub.UserRecheck,
}

func (s *server) revoke(w http.ResponseWriter, r *http.Request) {
	var req revokeRequest
	if !s.controlRequest(w, r, &req) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	res, err := s.hub.Revoke(ctx, rthub.Revocation{Subject: req.Subject, TokenID: req.TokenID, IssuedBefore: req.IssuedBefore, Reason: req.Reason})
	answerControl(w, res, err)
}

func (s *server) control(w http.ResponseWriter, r *http.Request) {
	var req controlRequest
	if !s.controlRequest(w, r, &req) {
		return
	}
	kind, ok := kinds[req.Kind]
	if !ok {
		jsonError(w, http.StatusBadRequest, "unknown kind")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	res, err := s.hub.ControlUser(ctx, req.Subject, rthub.UserAction{Kind: kind, Room: req.Room, Reason: req.Reason})
	answerControl(w, res, err)
}

// controlRequest checks the publisher token and decodes the body into v.
func (s *server) controlRequest(w http.ResponseWriter, r *http.Request, v any) bool {
	if !s.authorized(r.Header.Get("Authorization"), "publisher") {
		jsonError(w, http.StatusUnauthorized, "unauthorized")
		return false
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10)).Decode(v); err != nil {
		jsonError(w, http.StatusBadRequest, "bad body: "+err.Error())
		return false
	}
	return true
}

func answerControl(w http.ResponseWriter, res rthub.ControlResult, err error) {
	a := controlAnswer{Result: res}
	code := http.StatusOK
	if err != nil {
		a.Error = err.Error()
		switch {
		case errors.Is(err, rthub.ErrIncomplete), errors.Is(err, rthub.ErrNotFound):
		case errors.Is(err, rthub.ErrBadRequest), errors.Is(err, rthub.ErrBadRoom):
			code = http.StatusBadRequest
		default:
			code = http.StatusInternalServerError
		}
	}
	writeJSON(w, code, a)
}
