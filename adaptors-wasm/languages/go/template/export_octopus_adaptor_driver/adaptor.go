// The counter adaptor: the smallest complete Octopus adaptor. Every poll adds `step` to
// a count and reports it; the count survives a hot swap through snapshot/restore.
//
// To start your own adaptor, copy this folder, keep octopus.go as it is and rewrite this
// file. The host creates one instance per device, so package-level variables are that
// one device's state.
package export_octopus_adaptor_driver

import (
	"math"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
)

const (
	AdaptorName = "adaptors.edge.cattle.io/counter"
	Version     = "0.1.0+" + Language
)

// config is the parsed spec.
type config struct {
	step       int64
	intervalMs uint64
}

// The device's state.
var (
	cfg   *config // nil until configure succeeds
	count int64
)

// Describe names the adaptor and the models it serves. It runs on a scratch instance
// with nothing granted, so it must not touch any capability.
func Describe() AdaptorInfo {
	return AdaptorInfo{
		Name:    AdaptorName,
		Version: Version,
		Models: []ModelInfo{{
			Model: Model{
				ApiVersion: "devices.edge.cattle.io/v1alpha1",
				Kind:       "CounterDevice",
			},
			// Spec fields that name a resource go here, e.g.
			// {Path: "endpoint", Kind: ResourceKindTcp}; the counter has none.
			ResourceFields: nil,
		}},
	}
}

// parseSpec reads {"step": <int, default 1>, "syncIntervalMs": <int >= 10, default 1000>}.
func parseSpec(text string) (*config, error) {
	spec, err := ParseSpec(text)
	if err != nil {
		return nil, err
	}
	step, err := spec.Int("step", 1, math.MinInt64, math.MaxInt64)
	if err != nil {
		return nil, err
	}
	interval, err := spec.Int("syncIntervalMs", 1000, 10, math.MaxInt64)
	if err != nil {
		return nil, err
	}
	return &config{step: step, intervalMs: uint64(interval)}, nil
}

func configure(c DeviceConfig) (DeviceSettings, error) {
	next, err := parseSpec(c.Spec)
	if err != nil {
		return DeviceSettings{}, err
	}
	cfg = next
	return PollEvery(cfg.intervalMs), nil
}

func Configure(c DeviceConfig) witTypes.Result[DeviceSettings, AdaptorError] {
	return Call(func() (DeviceSettings, error) { return configure(c) })
}

// Reconfigure applies a changed spec. The counter has no connection to keep, so it is
// the same as Configure; an invalid spec leaves the previous one in force.
func Reconfigure(c DeviceConfig) witTypes.Result[DeviceSettings, AdaptorError] {
	return Call(func() (DeviceSettings, error) { return configure(c) })
}

// status is what poll reports; the json tags are the field names in the DeviceLink status.
type status struct {
	Count    int64  `json:"count"`
	Language string `json:"language"`
}

func Poll() witTypes.Result[string, AdaptorError] {
	return Call(func() (string, error) {
		if cfg == nil {
			return "", Internal("poll before configure")
		}
		count += cfg.step
		return StatusJSON(status{Count: count, Language: Language})
	})
}

// snapshot is the state another build (any language) takes over: {"count": <n>}.
type snapshot struct {
	Count int64 `json:"count"`
}

func Snapshot() witTypes.Result[[]uint8, AdaptorError] {
	return Call(func() ([]uint8, error) { return SnapshotJSON(snapshot{Count: count}) })
}

func Restore(state []uint8, fromVersion string) witTypes.Result[witTypes.Unit, AdaptorError] {
	return CallUnit(func() error {
		fields, err := SnapshotFields(state, fromVersion)
		if err != nil {
			return err
		}
		n, err := SnapshotInt(fields, "count", math.MinInt64)
		if err != nil {
			return err
		}
		count = n
		return nil
	})
}

// Shutdown releases what the device holds; the counter holds nothing.
func Shutdown() {
	CallVoid(func() { cfg = nil })
}
