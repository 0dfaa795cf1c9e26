package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/qinling-go/qinling/pkg/errdefs"
)

// jsonSpace is the white space JSON allows between tokens (RFC 8259).
const jsonSpace = " \t\r\n"

// decodeJSON reads a JSON object body into v the way upstream's WSME did:
// malformed JSON, unknown attributes and wrong types are 400s that say what is
// wrong. An empty body decodes as {}.
func (s *Server) decodeJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, s.Limits.MaxBodySize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge("Request body", mbe.Limit, bodySizeOption)
		}
		return errdefs.Invalid("Could not read the request body: %v", err)
	}
	if len(bytes.Trim(body, jsonSpace)) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	// Anything after the object but JSON's white space is malformed
	// (dec.More alone let a stray "}" or "]" through, bytes.TrimSpace a
	// vertical tab).
	if len(bytes.Trim(body[dec.InputOffset():], jsonSpace)) > 0 {
		return errdefs.Invalid("Request is not in valid JSON format.")
	}
	return nil
}

func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		if te.Field == "" {
			return errdefs.Invalid("Request body must be a JSON object.")
		}
		return errdefs.Invalid("Invalid input for field/attribute %s. Value has type %s, expected %s.", te.Field, te.Value, jsonTypeName(te.Type.String()))
	case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return errdefs.Invalid("Request is not in valid JSON format.")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.TrimPrefix(err.Error(), "json: unknown field ")
		return errdefs.Invalid("Unknown attribute for argument: %s", strings.Trim(name, `"`))
	}
	var fe *fieldError
	if errors.As(err, &fe) {
		return errdefs.Invalid("%s", fe.Error())
	}
	return errdefs.Invalid("Invalid request body: %v", err)
}

func jsonTypeName(goType string) string {
	switch {
	case strings.Contains(goType, "bool"):
		return "a boolean"
	case strings.Contains(goType, "int"), strings.Contains(goType, "float"):
		return "a number"
	case strings.Contains(goType, "string"):
		return "a string"
	}
	return goType
}

type fieldError struct{ msg string }

func (e *fieldError) Error() string { return e.msg }

// flexInt is an integer that may arrive as a JSON number or a numeric string
// (the CLI sends "function_version": "2" on alias and webhook updates).
type flexInt struct {
	Set   bool
	Value int
}

func (f *flexInt) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "null" {
		*f = flexInt{}
		return nil
	}
	s = strings.Trim(s, `"`)
	n, err := strconv.Atoi(s)
	if err != nil {
		return &fieldError{msg: fmt.Sprintf("Invalid input: %s is not an integer.", string(b))}
	}
	*f = flexInt{Set: true, Value: n}
	return nil
}

// optString is a JSON string that may be null or absent.
type optString struct {
	Set   bool
	Value *string
}

func (o *optString) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(b) == "null" {
		o.Value = nil
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &fieldError{msg: fmt.Sprintf("Invalid input: %s is not a string.", string(b))}
	}
	o.Value = &s
	return nil
}

// formInt parses an integer form field ("" means absent), with upstream's
// message for resource fields.
func formInt(name, v string) (int64, bool, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, false, errdefs.Invalid("Invalid %s resource specified. An integer is required.", name)
	}
	return n, true, nil
}
