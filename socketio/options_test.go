package socketio_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/socketio"
)

func TestDefaultRoute(t *testing.T) {
	tests := []struct {
		args    []string
		room    string
		data    string
		wantErr bool
	}{
		{args: []string{`"staff"`, `{"id":3}`}, room: "staff", data: `{"id":3}`},
		{args: []string{`{"room":"staff","id":3}`}, room: "staff", data: `{"room":"staff","id":3}`},
		{args: []string{`{"id":3}`}, wantErr: true},
		{args: []string{`3`, `{}`}, wantErr: true},
		{args: nil, wantErr: true},
		{args: []string{`"a"`, `1`, `2`}, wantErr: true},
	}
	for _, tt := range tests {
		args := make([]json.RawMessage, len(tt.args))
		for i, a := range tt.args {
			args[i] = json.RawMessage(a)
		}
		room, data, err := socketio.DefaultRoute("ev", args)
		if (err != nil) != tt.wantErr || room != tt.room || string(data) != tt.data {
			t.Errorf("DefaultRoute(%v) = %q, %s, %v", tt.args, room, data, err)
		}
	}
}

func TestNew_options(t *testing.T) {
	hub, err := rthub.New(rthub.Options{Auth: rthub.AuthOptions{Keys: map[string]any{"": []byte("0123456789abcdef0123456789abcdef")}},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{"staff": {AutoJoin: []string{"staff"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	for _, o := range []socketio.Options{{PingInterval: -1}, {MaxPayload: -1}, {Recovery: socketio.RecoveryOptions{Window: -time.Second}}} {
		if _, err := socketio.New(hub, o); !errors.Is(err, socketio.ErrInvalidOptions) {
			t.Errorf("New(%+v) = %v, want ErrInvalidOptions", o, err)
		}
	}
	if _, err := socketio.New(nil, socketio.Options{}); !errors.Is(err, socketio.ErrInvalidOptions) {
		t.Errorf("New(nil hub) = %v", err)
	}
	s, err := socketio.New(hub, socketio.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	_ = s.Close() // idempotent
}
