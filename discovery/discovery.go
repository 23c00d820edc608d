package discovery

// Packet path: Find sends one QUERY datagram (with a fresh nonce) to port
// 11 of every reachable node and gathers the ANSWER datagrams that come
// back, keeping only those from nodes it asked whose signature over the
// nonce, the asker and the services verifies; a Responder reads queries on
// port 11 and answers, signed with its node's key, with the services it
// has that match.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/internal/ratelimit"
	"github.com/servald/servald/mesh"
)

// Port is the well-known MDP port of service discovery.
const Port = 11

// MaxName is the longest service name.
const MaxName = 64

const (
	typeQuery  byte = 'Q'
	typeAnswer byte = 'A'
)

// NonceLen is the length of a query's nonce, which its answers repeat.
const NonceLen = 16

// sigContext starts what an answer's signature covers (see signedBytes).
const sigContext = "servald discovery answer v2\x00"

// ErrMalformed is wrapped by decoding errors.
var ErrMalformed = errors.New("discovery: malformed packet")

// Service is one advertised service.
type Service struct {
	Name string
	Port uint16
}

// String returns "NAME.mdp.port=PORT".
func (s Service) String() string { return fmt.Sprintf("%s.mdp.port=%d", s.Name, s.Port) }

// ValidName reports whether name can be advertised.
func ValidName(name string) error {
	if name == "" || len(name) > MaxName {
		return fmt.Errorf("discovery: service name must be 1-%d characters", MaxName)
	}
	for _, r := range name {
		if !(r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return fmt.Errorf("discovery: service name %q: only letters, digits, '-', '_' and '.'", name)
		}
	}
	return nil
}

// Nonce is a query's random nonce.
type Nonce [NonceLen]byte

// AppendQuery encodes a query for name ("" asks for every service).
func AppendQuery(b []byte, nonce Nonce, name string) []byte {
	b = append(b, typeQuery)
	b = append(b, nonce[:]...)
	return append(b, name...)
}

// ParseQuery decodes a query.
func ParseQuery(b []byte) (Nonce, string, error) {
	var n Nonce
	if len(b) < 1+NonceLen || b[0] != typeQuery || len(b) > 1+NonceLen+MaxName {
		return n, "", ErrMalformed
	}
	copy(n[:], b[1:])
	name := string(b[1+NonceLen:])
	if name != "" {
		if err := ValidName(name); err != nil {
			return n, "", fmt.Errorf("%w: %v", ErrMalformed, err)
		}
	}
	return n, name, nil
}

// signedBytes is what the signature of an answer from node from to node to
// covers: the context, both SIDs, the nonce and the service lines.
func signedBytes(from, to identity.SID, nonce Nonce, lines []byte) []byte {
	b := append([]byte(sigContext), from[:]...)
	b = append(b, to[:]...)
	b = append(b, nonce[:]...)
	return append(b, lines...)
}

// AppendAnswer encodes the answer of node id to node to's query with
// nonce: the services, one line each, signed with id's key.
func AppendAnswer(b []byte, id *identity.Identity, to identity.SID, nonce Nonce, svcs []Service) []byte {
	var lines []byte
	for _, s := range svcs {
		lines = append(lines, s.String()...)
		lines = append(lines, '\n')
	}
	b = append(b, typeAnswer)
	b = append(b, nonce[:]...)
	b = append(b, id.Sign(signedBytes(id.SID(), to, nonce, lines))...)
	return append(b, lines...)
}

// answerOverhead is the size of an answer with no service.
const answerOverhead = 1 + NonceLen + identity.SignatureLen

// ErrBadSignature is wrapped by VerifyAnswer's error for an answer whose
// signature is not its sender's over this query.
var ErrBadSignature = errors.New("discovery: answer not signed by its node for this query")

// VerifyAnswer decodes the answer b that node from sent to node to's query
// with nonce, checking that it repeats the nonce and that from signed it.
func VerifyAnswer(b []byte, from, to identity.SID, nonce Nonce) ([]Service, error) {
	if len(b) < answerOverhead || b[0] != typeAnswer {
		return nil, ErrMalformed
	}
	var n Nonce
	copy(n[:], b[1:])
	if n != nonce {
		return nil, fmt.Errorf("%w: another query's nonce", ErrBadSignature)
	}
	sig, lines := b[1+NonceLen:answerOverhead], b[answerOverhead:]
	if !identity.Verify(from, signedBytes(from, to, nonce, lines), sig) {
		return nil, ErrBadSignature
	}
	return parseLines(lines)
}

// parseLines decodes an answer's service lines.
func parseLines(b []byte) ([]Service, error) {
	var out []Service
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" {
			continue
		}
		name, port, ok := strings.Cut(line, ".mdp.port=")
		if !ok || ValidName(name) != nil {
			return nil, fmt.Errorf("%w: line %q", ErrMalformed, line)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("%w: port in %q", ErrMalformed, line)
		}
		out = append(out, Service{Name: name, Port: uint16(p)})
	}
	return out, nil
}

// PacketConn is an MDP port: *mesh.PacketConn, or one bound through a daemon.
type PacketConn interface {
	ReadFrom(p []byte) (int, net.Addr, error)
	WriteTo(p []byte, addr net.Addr) (int, error)
	Close() error
}

// maxPayloader is implemented by MDP ports that know the largest datagram
// that reaches a node (*mesh.PacketConn, a daemon's port).
type maxPayloader interface {
	MaxPayload(sid identity.SID) int
}

// minAnswerRoom is the answer size assumed when the port cannot say: what
// every link carries.
const minAnswerRoom = 1024

// Responder answers discovery queries for the services advertised on it.
// One name may be advertised at several ports, and one service several
// times (by several listeners sharing a daemon): it is answered, once,
// while any of its advertisements stands.
type Responder struct {
	pc  PacketConn
	id  *identity.Identity
	log *slog.Logger
	// signs bounds the answers signed per second: any node in the mesh
	// may ask, each answer costs a signature, and asking is cheap.
	signs   *ratelimit.Bucket
	dropped atomic.Uint64 // queries not answered for want of a token
	wg      sync.WaitGroup

	mu     sync.Mutex
	ads    map[uint64]Service // standing advertisements; guarded by mu
	nextAd uint64             // guarded by mu
}

// NewResponder answers queries arriving on pc, the discovery port (Port)
// of node id, signing its answers with id's key; Close closes pc.
func NewResponder(pc PacketConn, id *identity.Identity, log *slog.Logger) *Responder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Responder{pc: pc, id: id, log: log, ads: map[uint64]Service{}, signs: ratelimit.New(MaxAnswersPerSecond, MaxAnswersPerSecond)}
	r.wg.Add(1)
	go r.serve()
	return r
}

// Add advertises name at port until Remove(name).
func (r *Responder) Add(name string, port uint16) error {
	_, err := r.Advertise(name, port)
	return err
}

// Advertise advertises name at port until withdraw is called (once or
// more) or Remove(name).
func (r *Responder) Advertise(name string, port uint16) (withdraw func(), err error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	if port == 0 {
		return nil, fmt.Errorf("discovery: service %s: port 0", name)
	}
	r.mu.Lock()
	id := r.nextAd
	r.nextAd++
	r.ads[id] = Service{Name: name, Port: port}
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		delete(r.ads, id)
		r.mu.Unlock()
	}, nil
}

// Remove stops advertising name, at every port.
func (r *Responder) Remove(name string) {
	r.mu.Lock()
	for id, s := range r.ads {
		if s.Name == name {
			delete(r.ads, id)
		}
	}
	r.mu.Unlock()
}

// MaxAnswersPerSecond bounds the answers a Responder signs per second
// (bursts as large); queries beyond are dropped and counted (Dropped).
const MaxAnswersPerSecond = 200

// Dropped is how many queries went unanswered for the rate bound.
func (r *Responder) Dropped() uint64 { return r.dropped.Load() }

// Close stops answering.
func (r *Responder) Close() error {
	err := r.pc.Close()
	r.wg.Wait()
	return err
}

func (r *Responder) serve() {
	defer r.wg.Done()
	buf := make([]byte, 2048)
	for {
		k, from, err := r.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		nonce, name, err := ParseQuery(buf[:k])
		if err != nil {
			r.log.Debug("discovery: bad query", "from", from, "err", err)
			continue
		}
		a, ok := mesh.AddrOf(from)
		if !ok {
			continue
		}
		if !r.signs.Take() {
			r.dropped.Add(1)
			continue
		}
		// An empty answer too, so that Find need not wait for this node.
		r.pc.WriteTo(r.answer(name, a.SID, nonce), from)
	}
}

// answer encodes the services matching name, as many as fit one datagram
// to sid (in name order; an answer is cut, never split).
func (r *Responder) answer(name string, to identity.SID, nonce Nonce) []byte {
	r.mu.Lock()
	seen := map[Service]bool{}
	var match []Service
	for _, s := range r.ads {
		if (name == "" || s.Name == name) && !seen[s] {
			seen[s] = true
			match = append(match, s)
		}
	}
	r.mu.Unlock()
	sort.Slice(match, func(i, j int) bool {
		if match[i].Name != match[j].Name {
			return match[i].Name < match[j].Name
		}
		return match[i].Port < match[j].Port
	})
	room := minAnswerRoom
	if mp, ok := r.pc.(maxPayloader); ok {
		room = max(mp.MaxPayload(to), answerOverhead+MaxName+len(".mdp.port=65535\n"))
	}
	n := answerOverhead
	for i, s := range match {
		if n += len(s.String()) + 1; n > room {
			match = match[:i]
			break
		}
	}
	return AppendAnswer(nil, r.id, to, nonce, match)
}

// Answer is one service found.
type Answer struct {
	SID  identity.SID
	Hops int
	Service
}

// String returns "SID NAME.mdp.port=PORT".
func (a Answer) String() string { return a.SID.String() + " " + a.Service.String() }

// Ignored counts the answers Find dropped.
type Ignored struct {
	NotAsked     int // from a node that was not asked (or asked and answered already)
	BadSignature int // not signed by their node for this query
	Malformed    int
}

// Find asks self and every node in routes for name ("" for all services)
// through pc (an unused MDP port, which Find closes) and returns the answers
// that arrive before ctx ends or every node has answered, nearest first.
// Only answers signed by the node asked, for this query, count.
func Find(ctx context.Context, pc PacketConn, self identity.SID, routes []mesh.Route, name string) ([]Answer, error) {
	out, _, err := FindCounting(ctx, pc, self, routes, name)
	return out, err
}

// FindCounting is Find that also says how many answers it ignored.
func FindCounting(ctx context.Context, pc PacketConn, self identity.SID, routes []mesh.Route, name string) ([]Answer, Ignored, error) {
	var ign Ignored
	if name != "" {
		if err := ValidName(name); err != nil {
			return nil, ign, err
		}
	}
	var nonce Nonce
	rand.Read(nonce[:])
	defer pc.Close()
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	hops := map[identity.SID]int{}
	q := AppendQuery(nil, nonce, name)
	targets := append([]mesh.Route{{SID: self}}, routes...)
	for _, rt := range targets {
		hops[rt.SID] = rt.Hops
		pc.WriteTo(q, mesh.Addr{SID: rt.SID, Port: Port})
	}
	var out []Answer
	answered := map[identity.SID]bool{}
	buf := make([]byte, 65536)
	for len(answered) < len(targets) {
		k, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				break
			}
			return out, ign, err
		}
		a, ok := mesh.AddrOf(from)
		if _, asked := hops[a.SID]; !ok || a.Port != Port || !asked || answered[a.SID] {
			ign.NotAsked++
			continue
		}
		svcs, err := VerifyAnswer(buf[:k], a.SID, self, nonce)
		if errors.Is(err, ErrBadSignature) {
			ign.BadSignature++
			continue
		}
		if err != nil {
			ign.Malformed++
			continue
		}
		answered[a.SID] = true
		for _, s := range svcs {
			if name == "" || s.Name == name {
				out = append(out, Answer{SID: a.SID, Hops: hops[a.SID], Service: s})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Hops < out[j].Hops })
	return out, ign, nil
}
