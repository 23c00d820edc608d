package daemon

// Control-socket wire format: frames, requests and replies, datagrams.
//
// Data path: every byte on the daemon's Unix socket is a frame (a 32-bit
// length, a type byte, a body). A connection starts with one REQUEST frame
// (JSON) answered by one REPLY frame (JSON). After a successful BIND the
// connection carries DATAGRAM frames both ways (binary: SID, port,
// payload), MAXPAYLOAD queries from the client and their answers, and
// asynchronous write errors from the daemon.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"time"

	"github.com/servald/servald/discovery"
	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
)

// ProtocolVersion is the control-socket protocol version; a request with
// another version is refused.
const ProtocolVersion = 1

// Frame types.
const (
	frameRequest  byte = 'Q' // client → daemon: JSON request
	frameReply    byte = 'R' // daemon → client: JSON reply
	frameData     byte = 'D' // both ways after BIND: SID(32) port(2) payload
	frameMTUQuery byte = 'M' // client → daemon: SID(32)
	frameMTU      byte = 'm' // daemon → client: SID(32) maxPayload(4)
	frameWriteErr byte = 'E' // daemon → client: SID(32) code(1) maxPayload(4) message
	// frameNoProgress: client → daemon: SID(32): a session with SID saw
	// nothing acknowledged for several round trips (mesh.PacketConn's
	// NoProgress); no answer.
	frameNoProgress byte = 'P'
	// frameTimed: client → daemon after BIND: SID(32) port(2) budget(4)
	// payload, a datagram to send with mesh.PacketConn.WriteToWithin; the
	// budget is in microseconds, what was left when the frame was queued.
	frameTimed byte = 'T'
	// frameReport: client → daemon: JSON Report (report.go): what the
	// process does with its bound port, for `servald status`; no answer.
	frameReport byte = 'S'
	// frameStopping: daemon → client on a bound connection, no body: the
	// daemon is stopping (servald stop, SIGTERM); the connection closes
	// next.
	frameStopping byte = 'X'
)

// Sizes and bounds.
const (
	frameHeaderLen = 4 // big-endian length of type byte + body
	sidLen         = len(identity.SID{})
	addrLen        = sidLen + 2
	// maxRequest bounds a request frame.
	maxRequest = 4 << 10
	// maxReply bounds a reply frame (a routing table of tens of thousands
	// of nodes fits).
	maxReply = 8 << 20
	// maxDataFrame bounds every frame on a bound connection: the largest
	// datagram with its address and budget.
	maxDataFrame = 1 + addrLen + budgetLen + mesh.MaxPayload
	// budgetLen is the length of a TIMED frame's budget.
	budgetLen = 4
	// maxErrText bounds the message of a write error frame.
	maxErrText = 512
)

// Error codes carried in replies and write-error frames, so that callers
// can branch on the mesh's errors across the socket.
const (
	codeOther      = "error"
	codeNoRoute    = "no-route"
	codeTooLarge   = "too-large"
	codePortInUse  = "port-in-use"
	codeClosed     = "closed"
	codeBadRequest = "bad-request"
)

// errMalformed is wrapped by every decoding error.
var errMalformed = errors.New("daemon: malformed frame")

// appendFrame appends a frame of type typ with body to b.
func appendFrame(b []byte, typ byte, body []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(1+len(body)))
	b = append(b, typ)
	return append(b, body...)
}

// parseFrame decodes the frame at the start of b: its type, its body (which
// aliases b) and the bytes it took. A frame longer than limit (type byte and
// body) is an error; a frame not yet complete gives n == 0 and no error.
func parseFrame(b []byte, limit int) (typ byte, body []byte, n int, err error) {
	if len(b) < frameHeaderLen {
		return 0, nil, 0, nil
	}
	l := binary.BigEndian.Uint32(b)
	if l < 1 || uint64(l) > uint64(limit) {
		return 0, nil, 0, fmt.Errorf("%w: length %d (limit %d)", errMalformed, l, limit)
	}
	end := frameHeaderLen + int(l)
	if len(b) < end {
		return 0, nil, 0, nil
	}
	return b[frameHeaderLen], b[frameHeaderLen+1 : end], end, nil
}

// appendStopping appends a STOPPING frame.
func appendStopping(b []byte) []byte { return appendFrame(b, frameStopping, nil) }

// appendDatagram appends a DATAGRAM frame for payload to/from a.
func appendDatagram(b []byte, a mesh.Addr, payload []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(1+addrLen+len(payload)))
	b = append(b, frameData)
	b = append(b, a.SID[:]...)
	b = binary.BigEndian.AppendUint16(b, a.Port)
	return append(b, payload...)
}

// parseDatagram decodes a DATAGRAM frame's body; the payload aliases body.
func parseDatagram(body []byte) (mesh.Addr, []byte, error) {
	if len(body) < addrLen {
		return mesh.Addr{}, nil, fmt.Errorf("%w: datagram of %d bytes", errMalformed, len(body))
	}
	if len(body)-addrLen > mesh.MaxPayload {
		return mesh.Addr{}, nil, fmt.Errorf("%w: datagram payload of %d bytes", errMalformed, len(body)-addrLen)
	}
	var a mesh.Addr
	copy(a.SID[:], body)
	a.Port = binary.BigEndian.Uint16(body[sidLen:])
	return a, body[addrLen:], nil
}

// appendTimed appends a TIMED frame: payload to a, to be delivered within
// budget (whole microseconds, up to about 71 minutes; 0 or less is 0).
func appendTimed(b []byte, a mesh.Addr, budget time.Duration, payload []byte) []byte {
	us := uint32(min(max(budget/time.Microsecond, 0), math.MaxUint32))
	b = binary.BigEndian.AppendUint32(b, uint32(1+addrLen+budgetLen+len(payload)))
	b = append(b, frameTimed)
	b = append(b, a.SID[:]...)
	b = binary.BigEndian.AppendUint16(b, a.Port)
	b = binary.BigEndian.AppendUint32(b, us)
	return append(b, payload...)
}

// parseTimed decodes a TIMED frame's body; the payload aliases body.
func parseTimed(body []byte) (mesh.Addr, time.Duration, []byte, error) {
	if len(body) < addrLen+budgetLen || len(body)-addrLen-budgetLen > mesh.MaxPayload {
		return mesh.Addr{}, 0, nil, fmt.Errorf("%w: timed datagram of %d bytes", errMalformed, len(body))
	}
	a, _, err := parseDatagram(body[:addrLen])
	if err != nil {
		return mesh.Addr{}, 0, nil, err
	}
	us := binary.BigEndian.Uint32(body[addrLen:])
	return a, time.Duration(us) * time.Microsecond, body[addrLen+budgetLen:], nil
}

// appendMTUQuery appends a MAXPAYLOAD query for sid.
func appendMTUQuery(b []byte, sid identity.SID) []byte {
	return appendFrame(b, frameMTUQuery, sid[:])
}

// parseMTUQuery decodes a MAXPAYLOAD query's body.
func parseMTUQuery(body []byte) (identity.SID, error) { return parseSIDBody(body, "MTU query") }

// appendNoProgress appends a NO-PROGRESS report for sid.
func appendNoProgress(b []byte, sid identity.SID) []byte {
	return appendFrame(b, frameNoProgress, sid[:])
}

// parseNoProgress decodes a NO-PROGRESS report's body.
func parseNoProgress(body []byte) (identity.SID, error) {
	return parseSIDBody(body, "no-progress report")
}

// parseSIDBody decodes a frame body that is one SID.
func parseSIDBody(body []byte, what string) (identity.SID, error) {
	var sid identity.SID
	if len(body) != sidLen {
		return sid, fmt.Errorf("%w: %s of %d bytes", errMalformed, what, len(body))
	}
	copy(sid[:], body)
	return sid, nil
}

// appendMTU appends a MAXPAYLOAD answer.
func appendMTU(b []byte, sid identity.SID, max int) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(1+sidLen+4))
	b = append(b, frameMTU)
	b = append(b, sid[:]...)
	return binary.BigEndian.AppendUint32(b, uint32(max))
}

// parseMTU decodes a MAXPAYLOAD answer's body.
func parseMTU(body []byte) (identity.SID, int, error) {
	var sid identity.SID
	if len(body) != sidLen+4 {
		return sid, 0, fmt.Errorf("%w: MTU answer of %d bytes", errMalformed, len(body))
	}
	copy(sid[:], body)
	max := binary.BigEndian.Uint32(body[sidLen:])
	if max > mesh.MaxPayload {
		return sid, 0, fmt.Errorf("%w: MTU answer %d", errMalformed, max)
	}
	return sid, int(max), nil
}

// Write-error codes (one byte on the wire).
var writeErrCodes = []string{codeOther, codeNoRoute, codeTooLarge, codeClosed}

// writeErr is an asynchronous error of a datagram written through the daemon.
type writeErr struct {
	SID        identity.SID
	Code       string
	MaxPayload int
	Msg        string
}

// appendWriteErr appends a WRITE-ERROR frame.
func appendWriteErr(b []byte, e writeErr) []byte {
	code := byte(0)
	for i, c := range writeErrCodes {
		if c == e.Code {
			code = byte(i)
		}
	}
	msg := e.Msg
	if len(msg) > maxErrText {
		msg = msg[:maxErrText]
	}
	b = binary.BigEndian.AppendUint32(b, uint32(1+sidLen+1+4+len(msg)))
	b = append(b, frameWriteErr)
	b = append(b, e.SID[:]...)
	b = append(b, code)
	b = binary.BigEndian.AppendUint32(b, uint32(e.MaxPayload))
	return append(b, msg...)
}

// parseWriteErr decodes a WRITE-ERROR frame's body.
func parseWriteErr(body []byte) (writeErr, error) {
	var e writeErr
	if len(body) < sidLen+5 || len(body) > sidLen+5+maxErrText {
		return e, fmt.Errorf("%w: write error of %d bytes", errMalformed, len(body))
	}
	copy(e.SID[:], body)
	code := int(body[sidLen])
	if code >= len(writeErrCodes) {
		return e, fmt.Errorf("%w: write error code %d", errMalformed, code)
	}
	e.Code = writeErrCodes[code]
	max := binary.BigEndian.Uint32(body[sidLen+1:])
	if max > mesh.MaxPayload {
		return e, fmt.Errorf("%w: write error max payload %d", errMalformed, max)
	}
	e.MaxPayload = int(max)
	e.Msg = string(body[sidLen+5:])
	return e, nil
}

// Request operations.
const (
	opStatus     = "status"
	opRoutes     = "routes"
	opNeighbours = "neighbours"
	opWait       = "wait"
	opStop       = "stop"
	opBind       = "bind"
	opAdvertise  = "advertise"
	opSnapshot   = "snapshot"
)

// request is the JSON body of a REQUEST frame.
type request struct {
	V         int           `json:"v"`
	Op        string        `json:"op"`
	SID       *identity.SID `json:"sid,omitempty"`        // wait
	TimeoutMS int64         `json:"timeout_ms,omitempty"` // wait
	Port      uint16        `json:"port,omitempty"`       // bind, advertise
	Service   string        `json:"service,omitempty"`    // advertise
}

// maxWait bounds a wait request.
const maxWait = time.Hour

// parseRequest decodes and checks a REQUEST frame's body.
func parseRequest(body []byte) (request, error) {
	var r request
	if err := json.Unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("%w: request: %v", errMalformed, err)
	}
	if r.V != ProtocolVersion {
		return r, fmt.Errorf("%w: protocol version %d, this daemon speaks %d", errMalformed, r.V, ProtocolVersion)
	}
	switch r.Op {
	case opStatus, opRoutes, opNeighbours, opStop, opBind, opSnapshot:
	case opWait:
		if r.SID == nil {
			return r, fmt.Errorf("%w: wait without sid", errMalformed)
		}
		if r.TimeoutMS <= 0 || r.TimeoutMS > maxWait.Milliseconds() {
			return r, fmt.Errorf("%w: wait timeout %d ms out of range", errMalformed, r.TimeoutMS)
		}
	case opAdvertise:
		if err := discovery.ValidName(r.Service); err != nil {
			return r, fmt.Errorf("%w: advertise: %v", errMalformed, err)
		}
		if r.Port == 0 {
			return r, fmt.Errorf("%w: advertise %s at port 0", errMalformed, r.Service)
		}
	default:
		return r, fmt.Errorf("%w: unknown op %q", errMalformed, r.Op)
	}
	return r, nil
}

// reply is the JSON body of a REPLY frame: an error, or the answer to the
// request's op.
type reply struct {
	Error      string          `json:"error,omitempty"`
	Code       string          `json:"code,omitempty"`
	Status     *statusJSON     `json:"status,omitempty"`
	Routes     []routeJSON     `json:"routes,omitempty"`
	Neighbours []neighbourJSON `json:"neighbours,omitempty"`
	Bound      *boundJSON      `json:"bound,omitempty"`
	Stopping   *stoppingJSON   `json:"stopping,omitempty"`
	Snapshot   *StatusSnapshot `json:"snapshot,omitempty"`
}

type statusJSON struct {
	Proto      int          `json:"proto"`
	SID        identity.SID `json:"sid"`
	PID        int          `json:"pid"`
	UDP        string       `json:"udp"`
	Neighbours int          `json:"neighbours"`
	Routes     int          `json:"routes"`
	UptimeMS   int64        `json:"uptime_ms"`
	Stats      mesh.Stats   `json:"stats"`
	Peers      []string     `json:"peers,omitempty"` // configured peers, HOST:PORT
}

type routeJSON struct {
	SID     identity.SID `json:"sid"`
	NextHop identity.SID `json:"next_hop"`
	Hops    int          `json:"hops"`
	Metric  int          `json:"metric"`
	MTU     int          `json:"mtu"`
}

type neighbourJSON struct {
	SID       identity.SID `json:"sid"`
	Addr      string       `json:"addr"`
	MTU       int          `json:"mtu"`
	SRTTus    int64        `json:"srtt_us"`
	Loss      float64      `json:"loss"`
	LastHeard time.Time    `json:"last_heard"`
	Up        time.Time    `json:"up"`
}

type boundJSON struct {
	SID        identity.SID `json:"sid"`
	Port       uint16       `json:"port"`
	MaxPayload int          `json:"max_payload"` // towards a SID with no known path
	// NoProgress: the daemon takes NO-PROGRESS frames (an older one closes
	// the connection on a frame it does not know).
	NoProgress bool `json:"no_progress,omitempty"`
	// Timed: the daemon takes TIMED frames (WriteToWithin).
	Timed bool `json:"timed,omitempty"`
	// Report: the daemon takes REPORT frames (Port.SetReporter).
	Report bool `json:"report,omitempty"`
}

type stoppingJSON struct {
	PID int `json:"pid"`
}

// parseReply decodes a REPLY frame's body.
func parseReply(body []byte) (reply, error) {
	var r reply
	if err := json.Unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("%w: reply: %v", errMalformed, err)
	}
	return r, nil
}

func routesToJSON(rs []mesh.Route) []routeJSON {
	out := make([]routeJSON, len(rs))
	for i, r := range rs {
		out[i] = routeJSON{SID: r.SID, NextHop: r.NextHop, Hops: r.Hops, Metric: r.Metric, MTU: r.MTU}
	}
	return out
}

func routesFromJSON(rs []routeJSON) []mesh.Route {
	out := make([]mesh.Route, len(rs))
	for i, r := range rs {
		out[i] = mesh.Route{SID: r.SID, NextHop: r.NextHop, Hops: r.Hops, Metric: r.Metric, MTU: r.MTU}
	}
	return out
}

func neighboursToJSON(ns []mesh.Neighbour) []neighbourJSON {
	out := make([]neighbourJSON, len(ns))
	for i, n := range ns {
		addr := ""
		if n.Addr != nil {
			addr = n.Addr.String()
		}
		out[i] = neighbourJSON{SID: n.SID, Addr: addr, MTU: n.MTU, SRTTus: n.SRTT.Microseconds(),
			Loss: n.Loss, LastHeard: n.LastHeard, Up: n.Up}
	}
	return out
}

func neighboursFromJSON(ns []neighbourJSON) []mesh.Neighbour {
	out := make([]mesh.Neighbour, len(ns))
	for i, n := range ns {
		out[i] = mesh.Neighbour{SID: n.SID, Addr: parseAddr(n.Addr), MTU: n.MTU,
			SRTT: time.Duration(n.SRTTus) * time.Microsecond, Loss: n.Loss, LastHeard: n.LastHeard, Up: n.Up}
	}
	return out
}

// parseAddr turns an "ip:port" back into a *net.UDPAddr; anything else is
// kept as text.
func parseAddr(s string) net.Addr {
	if s == "" {
		return nil
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return net.UDPAddrFromAddrPort(ap)
	}
	return textAddr(s)
}

// textAddr is an address the daemon reported that is not ip:port.
type textAddr string

func (a textAddr) Network() string { return "udp" }
func (a textAddr) String() string  { return string(a) }

// errorCode classifies err for the wire.
func errorCode(err error) string {
	switch {
	case errors.Is(err, mesh.ErrNoRoute):
		return codeNoRoute
	case errors.Is(err, mesh.ErrTooLarge):
		return codeTooLarge
	case errors.Is(err, mesh.ErrPortInUse):
		return codePortInUse
	case errors.Is(err, net.ErrClosed):
		return codeClosed
	case errors.Is(err, errMalformed):
		return codeBadRequest
	}
	return codeOther
}

// RemoteError is an error the daemon reported. It unwraps to the mesh
// error it stands for (mesh.ErrNoRoute, mesh.ErrTooLarge,
// mesh.ErrPortInUse, net.ErrClosed), so errors.Is works across the socket.
type RemoteError struct {
	Code string // "no-route", "too-large", "port-in-use", "closed", "bad-request" or "error"
	Msg  string // the daemon's error text
}

func (e *RemoteError) Error() string { return "daemon: " + e.Msg }

// Unwrap returns the mesh error the code stands for, or nil.
func (e *RemoteError) Unwrap() error {
	switch e.Code {
	case codeNoRoute:
		return mesh.ErrNoRoute
	case codeTooLarge:
		return mesh.ErrTooLarge
	case codePortInUse:
		return mesh.ErrPortInUse
	case codeClosed:
		return net.ErrClosed
	}
	return nil
}
