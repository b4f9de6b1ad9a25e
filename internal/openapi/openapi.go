// Package openapi holds the OpenAPI 3.1 document of callcat's HTTP surface
// and a validator for the JSON Schema subset it uses, so that tests can check
// real responses against it.
//
// The document is written as JSON, which is also valid YAML 1.2, so it is
// served as both without a YAML encoder.
package openapi

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Document is the OpenAPI document, as JSON.
//
//go:embed openapi.json
var Document []byte

// Spec is the part of the document the checks read.
type Spec struct {
	Paths      map[string]map[string]Operation `json:"paths"`
	Components struct {
		Schemas map[string]*Schema `json:"schemas"`
	} `json:"components"`
}

// Operation is one method of a path.
type Operation struct {
	OperationID string              `json:"operationId"`
	Responses   map[string]Response `json:"responses"`
}

// Response is one documented status of an operation.
type Response struct {
	Content map[string]struct {
		Schema *Schema `json:"schema"`
	} `json:"content"`
}

// Schema is the JSON Schema subset the document uses: type (a name or a
// list of names, where "null" makes a value nullable), required,
// properties, additionalProperties, items, enum, pattern and $ref to
// #/components/schemas/<name>. Other keywords are documentation only.
type Schema struct {
	Ref                  string             `json:"$ref"`
	Type                 typeList           `json:"type"`
	Required             []string           `json:"required"`
	Properties           map[string]*Schema `json:"properties"`
	AdditionalProperties *Schema            `json:"additionalProperties"`
	Items                *Schema            `json:"items"`
	Enum                 []any              `json:"enum"`
	Pattern              string             `json:"pattern"`
}

// typeList decodes "type" given as one name or as a list of names.
type typeList []string

func (t *typeList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*t = typeList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("type must be a string or a list of strings: %w", err)
	}
	*t = many
	return nil
}

// Load parses Document.
func Load() (*Spec, error) {
	var s Spec
	if err := json.Unmarshal(Document, &s); err != nil {
		return nil, fmt.Errorf("parse openapi document: %w", err)
	}
	return &s, nil
}

// Operations returns every documented operation as "METHOD /path", sorted.
func (s *Spec) Operations() []string {
	var ops []string
	for path, methods := range s.Paths {
		for method := range methods {
			ops = append(ops, strings.ToUpper(method)+" "+path)
		}
	}
	sort.Strings(ops)
	return ops
}

// ValidateResponse checks a JSON response body against the schema that the
// document gives for path (as documented, e.g. "/v1/calls/{id}"), method,
// status and application/json.
func (s *Spec) ValidateResponse(method, path string, status int, body []byte) error {
	op, ok := s.Paths[path][strings.ToLower(method)]
	if !ok {
		return fmt.Errorf("%s %s is not documented", method, path)
	}
	resp, ok := op.Responses[strconv.Itoa(status)]
	if !ok {
		return fmt.Errorf("%s %s: status %d is not documented", method, path, status)
	}
	media, ok := resp.Content["application/json"]
	if !ok || media.Schema == nil {
		return fmt.Errorf("%s %s %d: no application/json schema", method, path, status)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("%s %s %d: body is not JSON: %w", method, path, status, err)
	}
	return s.Validate(media.Schema, v)
}

// Validate checks a decoded JSON value against schema.
func (s *Spec) Validate(schema *Schema, v any) error {
	return s.validate(schema, v, "$", 0)
}

// maxDepth bounds $ref chains and nesting, so that a cyclic document fails
// instead of recursing without end.
const maxDepth = 64

func (s *Spec) validate(schema *Schema, v any, at string, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%s: schema nests deeper than %d", at, maxDepth)
	}
	if schema.Ref != "" {
		name, ok := strings.CutPrefix(schema.Ref, "#/components/schemas/")
		target := s.Components.Schemas[name]
		if !ok || target == nil {
			return fmt.Errorf("%s: unresolved $ref %q", at, schema.Ref)
		}
		return s.validate(target, v, at, depth+1)
	}

	if len(schema.Type) > 0 && !slices.Contains(schema.Type, typeOf(v)) &&
		!(typeOf(v) == "integer" && slices.Contains(schema.Type, "number")) {
		return fmt.Errorf("%s: %s, want %s", at, typeOf(v), strings.Join(schema.Type, " or "))
	}
	if len(schema.Enum) > 0 && !slices.ContainsFunc(schema.Enum, func(e any) bool { return e == v }) {
		return fmt.Errorf("%s: %v is not one of %v", at, v, schema.Enum)
	}
	if schema.Pattern != "" {
		if str, ok := v.(string); ok {
			re, err := regexp.Compile(schema.Pattern)
			if err != nil {
				return fmt.Errorf("%s: bad pattern: %w", at, err)
			}
			if !re.MatchString(str) {
				return fmt.Errorf("%s: %q does not match %s", at, str, schema.Pattern)
			}
		}
	}

	switch v := v.(type) {
	case map[string]any:
		for _, name := range schema.Required {
			if _, ok := v[name]; !ok {
				return fmt.Errorf("%s: required property %q missing", at, name)
			}
		}
		var errs []error
		for name, value := range v {
			prop := schema.Properties[name]
			if prop == nil {
				prop = schema.AdditionalProperties
			}
			if prop == nil {
				continue
			}
			if err := s.validate(prop, value, at+"."+name, depth+1); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	case []any:
		if schema.Items == nil {
			return nil
		}
		for i, item := range v {
			if err := s.validate(schema.Items, item, at+"["+strconv.Itoa(i)+"]", depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// typeOf returns the JSON Schema type name of a value decoded by
// encoding/json.
func typeOf(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case float64:
		if v == float64(int64(v)) {
			return "integer"
		}
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	default:
		return fmt.Sprintf("%T", v)
	}
}
