package openapi_test

import (
	"strings"
	"testing"

	"github.com/callcat/callcat/internal/openapi"
)

func TestLoad(t *testing.T) {
	spec, err := openapi.Load()
	if err != nil {
		t.Fatal(err)
	}
	// Every $ref resolves: validating null against each response schema
	// fails on a type, never on an unresolved reference.
	for path, methods := range spec.Paths {
		for method, op := range methods {
			for status, resp := range op.Responses {
				for media, c := range resp.Content {
					if c.Schema == nil {
						t.Fatalf("%s %s %s %s: no schema", method, path, status, media)
					}
					if err := spec.Validate(c.Schema, nil); err != nil && strings.Contains(err.Error(), "$ref") {
						t.Fatalf("%s %s %s %s: %v", method, path, status, media, err)
					}
				}
			}
		}
	}
}

func TestValidateResponse(t *testing.T) {
	spec, err := openapi.Load()
	if err != nil {
		t.Fatal(err)
	}
	const call = `{"call_id":"c1","status":"ongoing","call_type":"phone_call","direction":null,"from_number":null,
		"to_number":"+15550100002","agent_id":null,"start_timestamp":1781000011483,"end_timestamp":null,
		"duration_ms":null,"disconnection_reason":null,"utterance_count":2,"metadata":{"a":1},"call_analysis":null}`
	if err := spec.ValidateResponse("GET", "/v1/calls/{id}", 200, []byte(call)); err != nil {
		t.Fatalf("valid call: %v", err)
	}

	cases := []struct {
		name   string
		path   string
		status int
		body   string
		want   string
	}{
		{"MissingField", "/v1/calls/{id}", 200, `{"call_id":"c1"}`, "required"},
		{"WrongType", "/v1/calls/{id}", 200, strings.Replace(call, `"utterance_count":2`, `"utterance_count":"2"`, 1), "utterance_count"},
		{"NotNullable", "/v1/calls/{id}", 200, strings.Replace(call, `"call_id":"c1"`, `"call_id":null`, 1), "call_id"},
		{"Enum", "/v1/calls/{id}", 200, strings.Replace(call, `"ongoing"`, `"paused"`, 1), "paused"},
		{"NotInteger", "/v1/calls/{id}", 200, strings.Replace(call, `"utterance_count":2`, `"utterance_count":2.5`, 1), "utterance_count"},
		{"Item", "/v1/calls", 200, `{"calls":[{"call_id":1}],"next_cursor":""}`, "calls[0]"},
		{"UndocumentedStatus", "/v1/calls/{id}", 418, call, "418"},
		{"UndocumentedPath", "/v2/calls", 200, call, "not documented"},
		{"NotJSON", "/v1/calls/{id}", 200, `{`, "JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := spec.ValidateResponse("GET", tc.path, tc.status, []byte(tc.body))
			if err == nil {
				t.Fatalf("err=nil, want one mentioning %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err=%v, want one mentioning %q", err, tc.want)
			}
		})
	}
}
