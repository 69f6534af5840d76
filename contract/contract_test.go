package contract_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/contract"
)

// The sample hub of the tests: the shape of docs/contract.md.
type Device struct {
	ID     string  `json:"id"`
	Parent *Device `json:"parent"`
}

type ReadingEvent struct {
	Device string             `json:"device"`
	At     time.Time          `json:"at"`
	Values map[string]float64 `json:"values"`
	Note   string             `json:"note,omitempty"`
	Parent *Device            `json:"parent"`
}

type StatusEvent struct {
	Device string `json:"device"`
	Status string `json:"status" jsonschema:"enum=online|offline"`
}

type AlertAck struct {
	ID   int64  `json:"id" jsonschema:"minimum=1"`
	Note string `json:"note,omitempty" jsonschema:"maxLength=200"`
}

func sampleSpec() contract.Spec {
	return contract.Spec{
		Title: "sample",
		Events: []contract.Event{
			{Name: "sensor:data", Type: reflect.TypeFor[ReadingEvent](), Summary: "One reading.", Rooms: []string{"device:{id}", "staff"}},
			{Name: "device:status", Type: reflect.TypeFor[StatusEvent](), Summary: "Online or offline", Rooms: []string{"staff"}},
			{Name: "audit:entry", Type: reflect.TypeFor[[]string](), Rooms: []string{"admin"}},
			{Name: "alert:ack", Type: reflect.TypeFor[AlertAck](), Summary: "Acknowledge an alert.", EmitOnly: true},
		},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{
			"staff": {Join: []string{"staff", "device:*"}, AutoJoin: []string{"staff"}},
			"admin": {
				Join: []string{"staff", "admin", "device:**"}, AutoJoin: []string{"user:{sub}"},
				Emit: []rthub.EmitRule{{Events: []string{"alert:*"}, Rooms: []string{"staff"}}},
			},
		}},
	}
}

type Threshold struct {
	Device string  `json:"device"`
	Limit  float64 `json:"limit" jsonschema:"minimum=0"`
}

type ThresholdAck struct {
	Device string  `json:"device"`
	Old    float64 `json:"old"`
}

// rpcSpec is the sample spec with RPCs: admins may call device:*.
func rpcSpec() contract.Spec {
	spec := sampleSpec()
	spec.Title = "sample with RPCs"
	spec.RPCs = []contract.RPC{
		{Name: "device:set-threshold", Request: reflect.TypeFor[Threshold](), Response: reflect.TypeFor[ThresholdAck](), Summary: "Set a device's alert threshold"},
		{Name: "device:reboot", Request: reflect.TypeFor[struct{}](), Response: reflect.TypeFor[string]()},
	}
	admin := spec.Policy.Roles["admin"]
	admin.Call = []string{"device:*"}
	spec.Policy.Roles["admin"] = admin
	return spec
}

// TestGolden compares the three documents of the sample spec with
// testdata/sample.* (no RPCs: the documents are those of before RPCs) and
// of the spec with RPCs with testdata/rpc.*; RTHUB_UPDATE_DOCS=1 rewrites
// them.
func TestGolden(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"sample", "rpc"} {
		spec := sampleSpec()
		if name == "rpc" {
			spec = rpcSpec()
		}
		golden(t, spec, name)
	}
}

func golden(t *testing.T, spec contract.Spec, name string) {
	c, err := contract.New(spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		file  string
		write func(*bytes.Buffer) error
	}{
		{name + ".d.ts", func(b *bytes.Buffer) error { return c.WriteTypeScript(b) }},
		{name + ".schema.json", func(b *bytes.Buffer) error { return c.WriteJSONSchema(b) }},
		{name + ".asyncapi.json", func(b *bytes.Buffer) error { return c.WriteAsyncAPI(b) }},
	} {
		var b bytes.Buffer
		if err := f.write(&b); err != nil {
			t.Fatal(err)
		}
		var again bytes.Buffer
		if err := f.write(&again); err != nil || !bytes.Equal(b.Bytes(), again.Bytes()) {
			t.Errorf("%s: two writes differ (%v)", f.file, err)
		}
		if strings.HasSuffix(f.file, ".json") && !json.Valid(b.Bytes()) {
			t.Errorf("%s: not valid JSON", f.file)
		}
		path := filepath.Join("testdata", f.file)
		if os.Getenv("RTHUB_UPDATE_DOCS") == "1" {
			if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(want, b.Bytes()) {
			t.Errorf("%s differs from the output (%v); if the change is intended, run RTHUB_UPDATE_DOCS=1 go test ./contract\n%s", path, err, b.String())
		}
	}
}

// TestTypeScriptMapping checks the TypeScript type of each kind of Go field.
func TestTypeScriptMapping(t *testing.T) {
	t.Parallel()
	type Inner struct {
		A int `json:"a"`
	}
	tests := []struct {
		name string
		typ  reflect.Type
		want string // the member line(s) of field F in the payload's interface
	}{
		{"string", reflect.TypeFor[string](), "F: string;"},
		{"int", reflect.TypeFor[int](), "/** integer */\n  F: number;"},
		{"float", reflect.TypeFor[float64](), "F: number;"},
		{"bool", reflect.TypeFor[bool](), "F: boolean;"},
		{"bytes", reflect.TypeFor[[]byte](), "/** base64 */\n  F: string;"},
		{"time", reflect.TypeFor[time.Time](), "/** RFC 3339 time */\n  F: string;"},
		{"timePtr", reflect.TypeFor[*time.Time](), "/** RFC 3339 time */\n  F: string | null;"},
		{"raw", reflect.TypeFor[json.RawMessage](), "F: unknown;"},
		{"any", reflect.TypeFor[any](), "F: unknown;"},
		{"slice", reflect.TypeFor[[]string](), "F: string[];"},
		{"sliceOfPtr", reflect.TypeFor[[]*Inner](), "F: (Inner | null)[];"},
		{"map", reflect.TypeFor[map[string]int](), "F: { [key: string]: number };"},
		{"ptr", reflect.TypeFor[*Inner](), "F: Inner | null;"},
		{"struct", reflect.TypeFor[Inner](), "F: Inner;"},
		{"anon", reflect.TypeFor[struct {
			B string `json:"b,omitempty"`
		}](), "F: {\n    b?: string;\n  };"},
		{"mapOfSlices", reflect.TypeFor[map[string][]float64](), "F: { [key: string]: number[] };"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			payload := reflect.StructOf([]reflect.StructField{{Name: "F", Type: tt.typ}})
			c, err := contract.New(contract.Spec{Events: []contract.Event{{Name: "x:y", Type: payload}}})
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			if err := c.WriteTypeScript(&b); err != nil {
				t.Fatal(err)
			}
			// The payload, an anonymous struct, is written inline in Events.
			want := "\n    " + strings.ReplaceAll(tt.want, "\n", "\n  ") + "\n"
			if !strings.Contains(b.String(), want) {
				t.Errorf("want member\n  %s\nin\n%s", tt.want, b.String())
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	spec := contract.Spec{
		Events: []contract.Event{
			{Name: "bad name", Type: reflect.TypeFor[int]()},
			{Name: "x:chan", Type: reflect.TypeFor[chan int]()},
			{Name: "x:tag", Type: reflect.TypeFor[struct {
				N int `jsonschema:"maxLength=1"`
			}]()},
			{Name: "x:room", Type: reflect.TypeFor[int](), Rooms: []string{"a::b"}},
			{Name: "x:dup", Type: reflect.TypeFor[int]()},
			{Name: "x:dup", Type: reflect.TypeFor[int]()},
			{Name: "x:rpc.request", Type: reflect.TypeFor[int]()},
		},
		RPCs: []contract.RPC{
			{Name: "bad rpc", Request: reflect.TypeFor[int](), Response: reflect.TypeFor[int]()},
			{Name: "x:noresp", Request: reflect.TypeFor[int]()},
			{Name: "x:chanreq", Request: reflect.TypeFor[chan int](), Response: reflect.TypeFor[int]()},
			{Name: "x:rpc", Request: reflect.TypeFor[int](), Response: reflect.TypeFor[int]()},
		},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{"r": {Join: []string{"dev*"}, Call: []string{"a::b"}}}},
	}
	_, err := contract.New(spec)
	if !errors.Is(err, contract.ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{`"bad name"`, `"x:chan"`, "no JSON encoding", "maxLength", `"a::b"`, "listed twice", `role "r"`,
		`RPC "bad rpc"`, `RPC "x:noresp": no response type`, `RPC "x:chanreq": request type`, `is an event's`, "Call[0]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
