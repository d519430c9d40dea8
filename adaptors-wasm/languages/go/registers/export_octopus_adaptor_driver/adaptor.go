// The registers adaptor: reads Modbus TCP holding registers through the limb's socket
// capability. Built from the counter template; build.sh adds the template's octopus.go.
//
// Its snapshot, {"polls": <n>}, is the one every language's build of this adaptor uses,
// so the limb can hot-swap a device between languages without losing the poll count.
package export_octopus_adaptor_driver

import (
	"encoding/binary"
	"math"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
	"wit_component/octopus_adaptor_log"
	"wit_component/octopus_adaptor_socket"
)

const (
	AdaptorName = "adaptors.edge.cattle.io/registers"
	Version     = "0.1.0+" + Language

	// The spec field that names the Modbus server. Declared as a `tcp` resource field, so
	// the limb grants exactly that endpoint under this grant name.
	endpointGrant = "endpoint"
	timeoutMs     = uint32(1000)
	maxCount      = 16
)

// config is the parsed spec.
type config struct {
	endpoint   string
	unitID     uint8
	address    uint16
	count      uint16
	intervalMs uint64
}

// The device's state.
var (
	cfg    *config                           // nil until configure succeeds
	stream *octopus_adaptor_socket.TcpStream // nil when not connected
	polls  uint64                            // successful polls, carried over by snapshot/restore
)

func Describe() AdaptorInfo {
	return AdaptorInfo{
		Name:    AdaptorName,
		Version: Version,
		Models: []ModelInfo{{
			Model: Model{
				ApiVersion: "devices.edge.cattle.io/v1alpha1",
				Kind:       "RegisterDevice",
			},
			ResourceFields: []ResourceField{{Path: endpointGrant, Kind: ResourceKindTcp}},
		}},
	}
}

func parseSpec(text string) (*config, error) {
	spec, err := ParseSpec(text)
	if err != nil {
		return nil, err
	}
	endpoint, err := spec.String("endpoint")
	if err != nil {
		return nil, err
	}
	if !isHostPort(endpoint) {
		return nil, InvalidSpec("endpoint must be \"host:port\", got %q", endpoint)
	}
	unitID, err := spec.Int("unitId", 1, 0, 255)
	if err != nil {
		return nil, err
	}
	address, err := spec.Int("address", 0, 0, 65535)
	if err != nil {
		return nil, err
	}
	count, err := spec.Int("count", 1, 1, maxCount)
	if err != nil {
		return nil, err
	}
	if address+count > 65536 {
		return nil, InvalidSpec("address + count must be <= 65536, got %d + %d", address, count)
	}
	interval, err := spec.Int("syncIntervalMs", 1000, 10, math.MaxInt64)
	if err != nil {
		return nil, err
	}
	return &config{
		endpoint:   endpoint,
		unitID:     uint8(unitID),
		address:    uint16(address),
		count:      uint16(count),
		intervalMs: uint64(interval),
	}, nil
}

// isHostPort accepts "host:port" and "[v6]:port" with a port in 1..=65535.
func isHostPort(s string) bool {
	i := len(s) - 1
	for i >= 0 && s[i] != ':' {
		i--
	}
	if i <= 0 || i == len(s)-1 || len(s)-i-1 > 5 {
		return false
	}
	port := 0
	for _, c := range s[i+1:] {
		if c < '0' || c > '9' {
			return false
		}
		port = port*10 + int(c-'0')
	}
	return port >= 1 && port <= 65535
}

// configure keeps the spec; nothing is connected until the first poll. The connection
// survives unless the endpoint or the unit ID changed.
func configure(c DeviceConfig) (DeviceSettings, error) {
	next, err := parseSpec(c.Spec)
	if err != nil {
		return DeviceSettings{}, err
	}
	if cfg != nil && (cfg.endpoint != next.endpoint || cfg.unitID != next.unitID) {
		disconnect("endpoint or unit ID changed")
	}
	cfg = next
	return PollEvery(cfg.intervalMs), nil
}

func Configure(c DeviceConfig) witTypes.Result[DeviceSettings, AdaptorError] {
	return Call(func() (DeviceSettings, error) { return configure(c) })
}

func Reconfigure(c DeviceConfig) witTypes.Result[DeviceSettings, AdaptorError] {
	return Call(func() (DeviceSettings, error) { return configure(c) })
}

// disconnect drops the stream resource, which closes the connection in the host. Drop it
// explicitly: the bindings' GC cleanup would close it too, but only whenever Go's garbage
// collector gets to it, and every device may hold only a few handles.
func disconnect(why string) {
	if stream != nil {
		Log(octopus_adaptor_log.Level_Debug, "closing connection to %s: %s", cfg.endpoint, why)
		stream.Drop()
		stream = nil
	}
}

type status struct {
	Registers []uint16 `json:"registers"`
	Polls     uint64   `json:"polls"`
	Language  string   `json:"language"`
}

func Poll() witTypes.Result[string, AdaptorError] {
	return Call(func() (string, error) {
		if cfg == nil {
			return "", Internal("poll before configure")
		}
		registers, err := readHoldingRegisters()
		if err != nil {
			return "", err
		}
		polls++
		return StatusJSON(status{Registers: registers, Polls: polls, Language: Language})
	})
}

// readHoldingRegisters does one Modbus TCP "read holding registers" (function 3).
func readHoldingRegisters() ([]uint16, error) {
	if stream == nil {
		res := octopus_adaptor_socket.ConnectTcp(endpointGrant, timeoutMs)
		ReleaseImportBuffers()
		if res.IsErr() {
			return nil, FromCapability("connect to "+cfg.endpoint, res.Err())
		}
		stream = res.Ok()
		Log(octopus_adaptor_log.Level_Info, "connected to %s", cfg.endpoint)
	}

	tid := uint16((polls + 1) % 65536)
	req := make([]byte, 12)
	binary.BigEndian.PutUint16(req[0:], tid)
	binary.BigEndian.PutUint16(req[2:], 0) // protocol id
	binary.BigEndian.PutUint16(req[4:], 6) // bytes after this field
	req[6] = cfg.unitID
	req[7] = 3
	binary.BigEndian.PutUint16(req[8:], cfg.address)
	binary.BigEndian.PutUint16(req[10:], cfg.count)

	sent := stream.Send(req, timeoutMs)
	ReleaseImportBuffers()
	if sent.IsErr() {
		err := FromCapability("send to "+cfg.endpoint, sent.Err())
		disconnect(err.Error())
		return nil, err
	}
	if n := sent.Ok(); n != uint32(len(req)) {
		disconnect("short write")
		return nil, Unreachable("send to %s: wrote %d of %d bytes", cfg.endpoint, n, len(req))
	}

	// Header (7) + function + byte count or exception code: 9 bytes, whatever the answer.
	head, err := receive(9)
	if err != nil {
		return nil, err
	}
	if got := binary.BigEndian.Uint16(head[0:]); got != tid {
		disconnect("out of step")
		return nil, Protocol("transaction id %d in the reply, expected %d", got, tid)
	}
	if head[6] != cfg.unitID {
		disconnect("out of step")
		return nil, Protocol("unit id %d in the reply, expected %d", head[6], cfg.unitID)
	}
	switch head[7] {
	case 0x83:
		// A complete exception frame: the stream stays usable.
		return nil, Protocol("exception %d", head[8])
	case 3:
	default:
		disconnect("out of step")
		return nil, Protocol("function %d in the reply, expected 3", head[7])
	}
	want := 2 * int(cfg.count)
	if int(head[8]) != want {
		disconnect("out of step")
		return nil, Protocol("byte count %d in the reply, expected %d", head[8], want)
	}
	body, err := receive(want)
	if err != nil {
		return nil, err
	}
	registers := make([]uint16, cfg.count)
	for i := range registers {
		registers[i] = binary.BigEndian.Uint16(body[2*i:])
	}
	return registers, nil
}

// receive reads exactly n bytes, in as many `receive` calls as it takes. Any failure
// drops the stream so that the next poll reconnects.
func receive(n int) ([]byte, error) {
	buf := make([]byte, 0, n)
	for len(buf) < n {
		res := stream.Receive(uint32(n-len(buf)), timeoutMs)
		if res.IsErr() {
			err := FromCapability("receive from "+cfg.endpoint, res.Err())
			ReleaseImportBuffers()
			disconnect(err.Error())
			return nil, err
		}
		chunk := res.Ok()
		buf = append(buf, chunk...)
		ReleaseImportBuffers()
		if len(chunk) == 0 {
			disconnect("closed by the server")
			return nil, Unreachable("receive from %s: the server closed the connection", cfg.endpoint)
		}
	}
	return buf, nil
}

// snapshot is shared by every language's build: {"polls": <n>}.
type snapshot struct {
	Polls uint64 `json:"polls"`
}

func Snapshot() witTypes.Result[[]uint8, AdaptorError] {
	return Call(func() ([]uint8, error) { return SnapshotJSON(snapshot{Polls: polls}) })
}

func Restore(state []uint8, fromVersion string) witTypes.Result[witTypes.Unit, AdaptorError] {
	return CallUnit(func() error {
		fields, err := SnapshotFields(state, fromVersion)
		if err != nil {
			return err
		}
		n, err := SnapshotInt(fields, "polls", 0)
		if err != nil {
			return err
		}
		polls = uint64(n)
		Log(octopus_adaptor_log.Level_Info, "restored polls=%d from %s", polls, fromVersion)
		return nil
	})
}

func Shutdown() {
	CallVoid(func() { disconnect("shutdown") })
}
