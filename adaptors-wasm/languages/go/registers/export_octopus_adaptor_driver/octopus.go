// Helpers every Octopus adaptor in Go needs: typed errors that map onto the WIT
// `adaptor-error` variants, spec parsing with errors that name the field, the status and
// snapshot JSON, and Call, which turns a Go panic into an `internal` error instead of a
// trap. Copy this file unchanged into a new adaptor; adaptor.go holds the device logic.
//
// The package name is fixed by `wit-bindgen go`: the generated glue calls the exported
// functions (Describe, Configure, ...) of package `export_octopus_adaptor_driver`.
package export_octopus_adaptor_driver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	witRuntime "go.bytecodealliance.org/pkg/wit/runtime"
	witTypes "go.bytecodealliance.org/pkg/wit/types"
	"wit_component/octopus_adaptor_log"
	"wit_component/octopus_adaptor_types"
)

// Language goes into every status document and into the version string.
const Language = "go"

// Short names for the generated WIT types.
type (
	AdaptorInfo    = octopus_adaptor_types.AdaptorInfo
	ModelInfo      = octopus_adaptor_types.ModelInfo
	Model          = octopus_adaptor_types.Model
	ResourceField  = octopus_adaptor_types.ResourceField
	DeviceConfig   = octopus_adaptor_types.DeviceConfig
	DeviceSettings = octopus_adaptor_types.DeviceSettings
	AdaptorError   = octopus_adaptor_types.AdaptorError
)

// Resource kinds for ResourceField.Kind: the limb grants the spec field's value.
const (
	ResourceKindTcp    = octopus_adaptor_types.ResourceKind_Tcp
	ResourceKindUdp    = octopus_adaptor_types.ResourceKind_Udp
	ResourceKindSerial = octopus_adaptor_types.ResourceKind_Serial
	ResourceKindGpio   = octopus_adaptor_types.ResourceKind_Gpio
)

// ---------------------------------------------------------------------------------------
// Errors

// Error is an adaptor failure with the WIT variant it maps to. Return it as a plain Go
// `error`; ToWit turns any error into an `adaptor-error` (unknown errors are `internal`).
type Error struct {
	Kind    uint8 // one of octopus_adaptor_types.AdaptorError_*
	Message string
}

func (e *Error) Error() string { return e.Message }

func newError(kind uint8, format string, args ...any) error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// InvalidSpec: the spec is wrong; retrying will not help until it changes.
func InvalidSpec(format string, args ...any) error {
	return newError(octopus_adaptor_types.AdaptorError_InvalidSpec, format, args...)
}

// NotPermitted: a capability was refused.
func NotPermitted(format string, args ...any) error {
	return newError(octopus_adaptor_types.AdaptorError_NotPermitted, format, args...)
}

// Unreachable: the device did not answer; the host retries.
func Unreachable(format string, args ...any) error {
	return newError(octopus_adaptor_types.AdaptorError_Unreachable, format, args...)
}

// Protocol: the device answered with something unusable.
func Protocol(format string, args ...any) error {
	return newError(octopus_adaptor_types.AdaptorError_Protocol, format, args...)
}

// IncompatibleState: `restore` cannot take this snapshot over.
func IncompatibleState(format string, args ...any) error {
	return newError(octopus_adaptor_types.AdaptorError_IncompatibleState, format, args...)
}

// Internal: anything else.
func Internal(format string, args ...any) error {
	return newError(octopus_adaptor_types.AdaptorError_Internal, format, args...)
}

// ToWit converts a Go error into the WIT `adaptor-error` variant.
func ToWit(err error) octopus_adaptor_types.AdaptorError {
	var e *Error
	if !errors.As(err, &e) {
		return octopus_adaptor_types.MakeAdaptorErrorInternal(err.Error())
	}
	switch e.Kind {
	case octopus_adaptor_types.AdaptorError_InvalidSpec:
		return octopus_adaptor_types.MakeAdaptorErrorInvalidSpec(e.Message)
	case octopus_adaptor_types.AdaptorError_NotPermitted:
		return octopus_adaptor_types.MakeAdaptorErrorNotPermitted(e.Message)
	case octopus_adaptor_types.AdaptorError_Unreachable:
		return octopus_adaptor_types.MakeAdaptorErrorUnreachable(e.Message)
	case octopus_adaptor_types.AdaptorError_Protocol:
		return octopus_adaptor_types.MakeAdaptorErrorProtocol(e.Message)
	case octopus_adaptor_types.AdaptorError_IncompatibleState:
		return octopus_adaptor_types.MakeAdaptorErrorIncompatibleState(e.Message)
	default:
		return octopus_adaptor_types.MakeAdaptorErrorInternal(e.Message)
	}
}

// CapabilityMessage describes a capability error for humans.
func CapabilityMessage(err octopus_adaptor_types.CapabilityError) string {
	switch err.Tag() {
	case octopus_adaptor_types.CapabilityError_NotPermitted:
		return err.NotPermitted()
	case octopus_adaptor_types.CapabilityError_Timeout:
		return "timed out"
	case octopus_adaptor_types.CapabilityError_LimitReached:
		return "handle limit reached: " + err.LimitReached()
	case octopus_adaptor_types.CapabilityError_Closed:
		return "connection closed"
	case octopus_adaptor_types.CapabilityError_Io:
		return err.Io()
	case octopus_adaptor_types.CapabilityError_InvalidArgument:
		return "invalid argument: " + err.InvalidArgument()
	default:
		return "unknown capability error"
	}
}

// FromCapability maps a capability error onto an adaptor error: a refusal stays
// `not-permitted`, everything else means the device is `unreachable`. `what` says which
// call failed, e.g. "connect to endpoint".
func FromCapability(what string, err octopus_adaptor_types.CapabilityError) error {
	msg := what + ": " + CapabilityMessage(err)
	if err.Tag() == octopus_adaptor_types.CapabilityError_NotPermitted {
		return NotPermitted("%s", msg)
	}
	return Unreachable("%s", msg)
}

// ---------------------------------------------------------------------------------------
// Calls: run the adaptor's logic and hand the generated glue the WIT result it expects.

// Call runs f and returns its value or its error as a WIT `result<T, adaptor-error>`.
// A panic inside f becomes an `internal` error instead of a trap (a trap makes the limb
// throw the instance and its state away and restart it).
func Call[T any](f func() (T, error)) (result witTypes.Result[T, octopus_adaptor_types.AdaptorError]) {
	defer func() {
		if r := recover(); r != nil {
			result = witTypes.Err[T](ToWit(panicError(r)))
		}
	}()
	value, err := f()
	if err != nil {
		return witTypes.Err[T](ToWit(err))
	}
	return witTypes.Ok[T, octopus_adaptor_types.AdaptorError](value)
}

// CallUnit is Call for functions that return only an error (`result<_, adaptor-error>`).
func CallUnit(f func() error) witTypes.Result[witTypes.Unit, octopus_adaptor_types.AdaptorError] {
	return Call(func() (witTypes.Unit, error) { return witTypes.Unit{}, f() })
}

// CallVoid runs f for an export without a result (shutdown), logging a panic.
func CallVoid(f func()) {
	defer func() {
		if r := recover(); r != nil {
			panicError(r)
		}
	}()
	f()
}

func panicError(r any) error {
	msg := fmt.Sprintf("panic: %v", r)
	Log(octopus_adaptor_log.Level_Error, "%s", msg)
	return Internal("%s", msg)
}

// PollEvery is the `device-settings` for polling every intervalMs milliseconds.
func PollEvery(intervalMs uint64) octopus_adaptor_types.DeviceSettings {
	return octopus_adaptor_types.DeviceSettings{PollIntervalMs: witTypes.Some(intervalMs)}
}

// ReleaseImportBuffers lets Go's garbage collector reclaim the lists and strings that
// capability calls returned (a `receive`'s bytes, an error message). The generated
// bindings allocate them pinned and unpin only when the next export with list or string
// arguments (configure, reconfigure, restore) arrives, so an adaptor that only polls
// would pin one buffer per call forever. Call it after every capability call that
// returns a list or a string; the values you hold stay valid (Go's GC does not move).
func ReleaseImportBuffers() {
	witRuntime.Unpin()
}

// Log writes one line into the limb's log at the given level, tagged with the device.
func Log(level octopus_adaptor_log.Level, format string, args ...any) {
	octopus_adaptor_log.Log(level, fmt.Sprintf(format, args...))
}

// ---------------------------------------------------------------------------------------
// Spec parsing

// Spec is a device spec (`template.spec`) as a JSON object. Every getter takes the field
// name, so errors always say which field is wrong; absent and `null` fields get the
// default. Fields nobody asks for are ignored.
type Spec struct {
	fields map[string]json.RawMessage
}

// ParseSpec parses the DeviceLink's `template.spec`.
func ParseSpec(text string) (*Spec, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(text), &fields); err != nil || fields == nil {
		return nil, InvalidSpec("spec must be a JSON object")
	}
	return &Spec{fields: fields}, nil
}

func (s *Spec) raw(field string) (json.RawMessage, bool) {
	raw, ok := s.fields[field]
	if !ok || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, false
	}
	return raw, true
}

// String returns a required string field.
func (s *Spec) String(field string) (string, error) {
	raw, ok := s.raw(field)
	if !ok {
		return "", InvalidSpec("%s is required", field)
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", InvalidSpec("%s must be a string, got %s", field, raw)
	}
	return v, nil
}

// Int returns an integer field in min..=max, or def when it is absent.
func (s *Spec) Int(field string, def, min, max int64) (int64, error) {
	raw, ok := s.raw(field)
	if !ok {
		return def, nil
	}
	v, err := JSONInt(raw)
	if err != nil {
		return 0, InvalidSpec("%s must be an integer, got %s", field, raw)
	}
	if v < min || v > max {
		switch {
		case max == maxInt64:
			return 0, InvalidSpec("%s must be >= %d, got %s", field, min, raw)
		case min == minInt64:
			return 0, InvalidSpec("%s must be <= %d, got %s", field, max, raw)
		default:
			return 0, InvalidSpec("%s must be %d..=%d, got %s", field, min, max, raw)
		}
	}
	return v, nil
}

const (
	maxInt64 = int64(^uint64(0) >> 1)
	minInt64 = -maxInt64 - 1
)

// JSONInt reads a JSON number that is an integer. Integers too big for int64 saturate,
// so range checks still report them as out of range; fractions and exponents are refused.
func JSONInt(raw json.RawMessage) (int64, error) {
	text := strings.TrimSpace(string(raw))
	digits := strings.TrimPrefix(text, "-")
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return 0, errors.New("not an integer")
	}
	v, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		if text[0] == '-' {
			return minInt64, nil
		}
		return maxInt64, nil
	}
	return v, nil
}

// ---------------------------------------------------------------------------------------
// Status and snapshots

// StatusJSON encodes a status document (a struct with `json` tags, or a map) as the JSON
// object `poll` returns.
func StatusJSON(status any) (string, error) {
	data, err := json.Marshal(status)
	if err != nil {
		return "", Internal("encoding status: %v", err)
	}
	if len(data) == 0 || data[0] != '{' {
		return "", Internal("status must be a JSON object, got %s", data)
	}
	return string(data), nil
}

// SnapshotJSON encodes state for `snapshot`.
func SnapshotJSON(state any) ([]byte, error) {
	data, err := json.Marshal(state)
	if err != nil {
		return nil, Internal("encoding snapshot: %v", err)
	}
	return data, nil
}

// SnapshotFields parses a snapshot that must be a JSON object; anything else is
// `incompatible-state`. Read its fields with SnapshotInt.
func SnapshotFields(state []byte, fromVersion string) (map[string]json.RawMessage, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(state, &fields); err != nil || fields == nil {
		return nil, IncompatibleState("snapshot from %s is not a JSON object", fromVersion)
	}
	return fields, nil
}

// SnapshotInt reads a required integer field of a snapshot, at least min (pass
// math.MinInt64 for no lower bound).
func SnapshotInt(fields map[string]json.RawMessage, field string, min int64) (int64, error) {
	raw, ok := fields[field]
	if !ok {
		return 0, IncompatibleState("snapshot has no %q", field)
	}
	v, err := JSONInt(raw)
	if err != nil || v == maxInt64 || v == minInt64 {
		return 0, IncompatibleState("snapshot field %q must be an integer, got %s", field, raw)
	}
	if v < min {
		return 0, IncompatibleState("snapshot field %q must be >= %d, got %s", field, min, raw)
	}
	return v, nil
}
