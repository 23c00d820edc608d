// Handshake flow (see doc.go for the wire formats):
//
//	initiator: NewInitiator ── INIT ──▶ responder: HashInit (duplicate?), ParseInit,
//	                                               then Init.Accept or Init.Refuse
//	initiator: Initiator.Finish ◀── RESPONSE (or REFUSE) ──
//	initiator: Session.Seal ── first DATA ──▶ responder: Session.Open confirms the session
//
// Nothing here keeps time or sends: the caller moves the bytes and retransmits.

package seal

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/servald/servald/identity"
)

// Version is the handshake protocol version carried in INIT.
const Version byte = 1

// Bounds on handshake fields.
const (
	// MaxParams is the largest parameter block either side may send.
	MaxParams = 256
	// MaxReason is the longest refusal text, in bytes.
	MaxReason = 128
	// MaxInitSkew is how far an INIT's timestamp may be from the
	// responder's clock, in either direction, for ParseInit to accept it.
	MaxInitSkew = 2 * time.Minute
)

// HashLen is the length of an INIT hash.
const HashLen = sha256.Size

const (
	keyLen  = chacha20poly1305.KeySize
	pubLen  = 32 // X25519 public key
	sigLen  = identity.SignatureLen
	sidLen  = identity.SIDLen
	macLen  = sha256.Size // HMAC-SHA256 key confirmation
	idxLen  = 4
	timeLen = 8

	// INIT: type, version, initiator SID, responder SID, ephemeral, index,
	// time, params length; then params and signature.
	initFixed = 1 + 1 + sidLen + sidLen + pubLen + idxLen + timeLen + 2
	// RESPONSE: type, receiver index, sender index, ephemeral, params
	// length; then params, signature, confirmation MAC.
	respFixed = 1 + idxLen + idxLen + pubLen + 2
	// REFUSE: type, receiver index, code, reason length; then reason and
	// signature.
	refuseFixed = 1 + idxLen + 1 + 1
)

// Domain-separation strings: every signature, hash and key has its own.
const (
	ctxInit       = "servald msp seal v1 INIT\x00"
	ctxResponse   = "servald msp seal v1 RESPONSE\x00"
	ctxRefuse     = "servald msp seal v1 REFUSE\x00"
	ctxTranscript = "servald msp seal v1 transcript\x00"
	labelI2R      = "servald msp seal v1 key initiator to responder"
	labelR2I      = "servald msp seal v1 key responder to initiator"
	labelConfirm  = "servald msp seal v1 key confirmation"
)

// ---- codecs (no cryptography; fuzzed for round trips) ----

type initMsg struct {
	version    byte
	initiator  identity.SID
	responder  identity.SID
	ephemeral  [pubLen]byte
	index      uint32
	millis     uint64 // Unix time in milliseconds
	params     []byte
	sig        [sigLen]byte
	signedSize int // bytes covered by the signature (set by parse and append)
}

// appendBody appends everything the signature covers.
func (m *initMsg) appendBody(b []byte) []byte {
	b = append(b, TypeInit, m.version)
	b = append(b, m.initiator[:]...)
	b = append(b, m.responder[:]...)
	b = append(b, m.ephemeral[:]...)
	b = be.AppendUint32(b, m.index)
	b = be.AppendUint64(b, m.millis)
	b = be.AppendUint16(b, uint16(len(m.params)))
	return append(b, m.params...)
}

func (m *initMsg) append(b []byte) []byte {
	return append(m.appendBody(b), m.sig[:]...)
}

// parseInitMsg decodes an INIT. params aliases b.
func parseInitMsg(b []byte) (initMsg, error) {
	var m initMsg
	if len(b) < 2 || b[0] != TypeInit {
		return m, fmt.Errorf("%w: not an INIT", ErrMalformed)
	}
	if b[1] != Version {
		return m, fmt.Errorf("%w: INIT version %d, this node speaks %d", ErrVersion, b[1], Version)
	}
	if len(b) < initFixed+sigLen {
		return m, fmt.Errorf("%w: INIT of %d bytes", ErrMalformed, len(b))
	}
	m.version = b[1]
	p := 2
	p += copy(m.initiator[:], b[p:])
	p += copy(m.responder[:], b[p:])
	p += copy(m.ephemeral[:], b[p:])
	m.index = be.Uint32(b[p:])
	p += idxLen
	m.millis = be.Uint64(b[p:])
	p += timeLen
	n := int(be.Uint16(b[p:]))
	p += 2
	if n > MaxParams {
		return m, fmt.Errorf("%w: INIT params of %d bytes (max %d)", ErrMalformed, n, MaxParams)
	}
	if len(b) != initFixed+n+sigLen {
		return m, fmt.Errorf("%w: INIT of %d bytes, want %d", ErrMalformed, len(b), initFixed+n+sigLen)
	}
	m.params = b[p : p+n : p+n]
	p += n
	m.signedSize = p
	copy(m.sig[:], b[p:])
	return m, nil
}

type responseMsg struct {
	receiver   uint32 // the initiator's index, echoed
	sender     uint32 // the responder's index
	ephemeral  [pubLen]byte
	params     []byte
	sig        [sigLen]byte
	confirm    [macLen]byte
	signedSize int
}

func (m *responseMsg) appendBody(b []byte) []byte {
	b = append(b, TypeResponse)
	b = be.AppendUint32(b, m.receiver)
	b = be.AppendUint32(b, m.sender)
	b = append(b, m.ephemeral[:]...)
	b = be.AppendUint16(b, uint16(len(m.params)))
	return append(b, m.params...)
}

func (m *responseMsg) append(b []byte) []byte {
	b = append(m.appendBody(b), m.sig[:]...)
	return append(b, m.confirm[:]...)
}

// parseResponseMsg decodes a RESPONSE. params aliases b.
func parseResponseMsg(b []byte) (responseMsg, error) {
	var m responseMsg
	if len(b) < respFixed+sigLen+macLen || b[0] != TypeResponse {
		return m, fmt.Errorf("%w: not a RESPONSE (%d bytes)", ErrMalformed, len(b))
	}
	p := 1
	m.receiver = be.Uint32(b[p:])
	p += idxLen
	m.sender = be.Uint32(b[p:])
	p += idxLen
	p += copy(m.ephemeral[:], b[p:])
	n := int(be.Uint16(b[p:]))
	p += 2
	if n > MaxParams {
		return m, fmt.Errorf("%w: RESPONSE params of %d bytes (max %d)", ErrMalformed, n, MaxParams)
	}
	if len(b) != respFixed+n+sigLen+macLen {
		return m, fmt.Errorf("%w: RESPONSE of %d bytes, want %d", ErrMalformed, len(b), respFixed+n+sigLen+macLen)
	}
	m.params = b[p : p+n : p+n]
	p += n
	m.signedSize = p
	p += copy(m.sig[:], b[p:])
	copy(m.confirm[:], b[p:])
	return m, nil
}

type refuseMsg struct {
	receiver   uint32 // the initiator's index, echoed
	code       RefuseCode
	reason     string
	sig        [sigLen]byte
	signedSize int
}

func (m *refuseMsg) appendBody(b []byte) []byte {
	b = append(b, TypeRefuse)
	b = be.AppendUint32(b, m.receiver)
	b = append(b, byte(m.code), byte(len(m.reason)))
	return append(b, m.reason...)
}

func (m *refuseMsg) append(b []byte) []byte {
	return append(m.appendBody(b), m.sig[:]...)
}

func parseRefuseMsg(b []byte) (refuseMsg, error) {
	var m refuseMsg
	if len(b) < refuseFixed+sigLen || b[0] != TypeRefuse {
		return m, fmt.Errorf("%w: not a REFUSE (%d bytes)", ErrMalformed, len(b))
	}
	m.receiver = be.Uint32(b[1:])
	m.code = RefuseCode(b[5])
	n := int(b[6])
	if n > MaxReason {
		return m, fmt.Errorf("%w: REFUSE reason of %d bytes (max %d)", ErrMalformed, n, MaxReason)
	}
	if len(b) != refuseFixed+n+sigLen {
		return m, fmt.Errorf("%w: REFUSE of %d bytes, want %d", ErrMalformed, len(b), refuseFixed+n+sigLen)
	}
	reason := b[refuseFixed : refuseFixed+n]
	if !utf8.Valid(reason) {
		return m, fmt.Errorf("%w: REFUSE reason is not UTF-8", ErrMalformed)
	}
	m.reason = string(reason)
	m.signedSize = refuseFixed + n
	copy(m.sig[:], b[m.signedSize:])
	return m, nil
}

// ---- key schedule ----

// signedMsg returns ctx || parts..., the exact bytes a signature covers.
func signedMsg(ctx string, parts ...[]byte) []byte {
	n := len(ctx)
	for _, p := range parts {
		n += len(p)
	}
	b := make([]byte, 0, n)
	b = append(b, ctx...)
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// transcriptHash is SHA-256(ctxTranscript || H(INIT) || RESPONSE body).
func transcriptHash(initHash *[HashLen]byte, respBody []byte) [HashLen]byte {
	h := sha256.New()
	h.Write([]byte(ctxTranscript))
	h.Write(initHash[:])
	h.Write(respBody)
	var th [HashLen]byte
	h.Sum(th[:0])
	return th
}

type sessionKeys struct {
	i2r, r2i, confirm []byte
}

// deriveKeys is HKDF-SHA256 with the X25519 secret as input keying
// material and the transcript hash as salt, expanded once per label.
func deriveKeys(shared []byte, th *[HashLen]byte) (sessionKeys, error) {
	var k sessionKeys
	prk, err := hkdf.Extract(sha256.New, shared, th[:])
	if err == nil {
		k.i2r, err = hkdf.Expand(sha256.New, prk, labelI2R, keyLen)
	}
	if err == nil {
		k.r2i, err = hkdf.Expand(sha256.New, prk, labelR2I, keyLen)
	}
	if err == nil {
		k.confirm, err = hkdf.Expand(sha256.New, prk, labelConfirm, macLen)
	}
	if err != nil {
		return k, fmt.Errorf("seal: key derivation: %w", err)
	}
	return k, nil
}

func confirmMAC(key []byte, th *[HashLen]byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(th[:])
	return m.Sum(nil)
}

// dh computes X25519(priv, peer); an all-zero result (a low-order peer
// key) is an authentication failure.
func dh(priv *ecdh.PrivateKey, peer []byte) ([]byte, error) {
	pub, err := ecdh.X25519().NewPublicKey(peer)
	if err != nil {
		return nil, fmt.Errorf("%w: peer ephemeral: %v", ErrAuth, err)
	}
	ss, err := priv.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: X25519: %v", ErrAuth, err)
	}
	return ss, nil
}

func newEphemeral() (*ecdh.PrivateKey, error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("seal: ephemeral key: %w", err)
	}
	return k, nil
}

// ---- initiator ----

// Initiator is the dialing side of one handshake. It is safe for concurrent
// use; it holds its ephemeral private key until Finish succeeds or is
// refused, so drop it when the handshake times out.
type Initiator struct {
	peer     identity.SID
	index    uint32
	msg      []byte // the INIT, resent as is on retransmission
	initHash [HashLen]byte

	mu   sync.Mutex
	eph  *ecdh.PrivateKey // guarded by mu; nil once finished
	done bool             // guarded by mu
}

// NewInitiator starts a handshake from id to peer. index is the caller's
// receive index for the session to be: it must be unique among the caller's
// live sessions and handshakes, since RESPONSE, REFUSE and DATA packets are
// routed to it by ReceiverIndex (a random value, checked against the
// caller's table, is best). params (at most MaxParams bytes) are delivered
// to the responder, authenticated but not encrypted. now stamps the INIT for
// the responder's freshness check.
func NewInitiator(id *identity.Identity, peer identity.SID, index uint32, params []byte, now time.Time) (*Initiator, error) {
	if len(params) > MaxParams {
		return nil, fmt.Errorf("seal: params of %d bytes (max %d)", len(params), MaxParams)
	}
	ms := now.UnixMilli()
	if ms < 0 {
		return nil, fmt.Errorf("seal: clock before 1970: %v", now)
	}
	eph, err := newEphemeral()
	if err != nil {
		return nil, err
	}
	m := initMsg{
		version:   Version,
		initiator: id.SID(),
		responder: peer,
		index:     index,
		millis:    uint64(ms),
		params:    params,
	}
	copy(m.ephemeral[:], eph.PublicKey().Bytes())
	body := m.appendBody(make([]byte, 0, initFixed+len(params)+sigLen))
	copy(m.sig[:], id.Sign(signedMsg(ctxInit, body)))
	msg := append(body, m.sig[:]...)
	return &Initiator{
		peer:     peer,
		index:    index,
		msg:      msg,
		initHash: sha256.Sum256(msg),
		eph:      eph,
	}, nil
}

// Message returns the INIT to send. Retransmit exactly these bytes, so that
// the responder recognises the duplicate and answers with the same RESPONSE.
// The caller must not modify them.
func (i *Initiator) Message() []byte { return i.msg }

// Peer returns the responder's SID.
func (i *Initiator) Peer() identity.SID { return i.peer }

// LocalIndex returns the index the responder's replies carry.
func (i *Initiator) LocalIndex() uint32 { return i.index }

// Finish processes the responder's reply (a packet with ReceiverIndex equal
// to LocalIndex). For a valid RESPONSE it returns the established Session,
// whose PeerParams are the responder's params; the caller must then send a
// DATA packet (an empty one will do) promptly, since that is what confirms
// the session to the responder. For a valid REFUSE it returns a
// *RefusedError (errors.Is ErrRefused). Both end the handshake: later calls
// return ErrFinished. Anything else (garbage, forgeries, replies to another
// INIT) returns another error and leaves the Initiator waiting, so a forged
// packet cannot abort a handshake.
func (i *Initiator) Finish(msg []byte) (*Session, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.done {
		return nil, ErrFinished
	}
	if len(msg) == 0 {
		return nil, fmt.Errorf("%w: empty reply", ErrMalformed)
	}
	switch msg[0] {
	case TypeResponse:
		return i.finishResponse(msg)
	case TypeRefuse:
		return nil, i.finishRefuse(msg)
	}
	return nil, fmt.Errorf("%w: packet type %d is not a handshake reply", ErrMalformed, msg[0])
}

func (i *Initiator) finishResponse(msg []byte) (*Session, error) {
	r, err := parseResponseMsg(msg)
	if err != nil {
		return nil, err
	}
	if r.receiver != i.index {
		return nil, fmt.Errorf("%w: RESPONSE for index %08x, this handshake is %08x", ErrMisaddressed, r.receiver, i.index)
	}
	body := msg[:r.signedSize]
	if !identity.Verify(i.peer, signedMsg(ctxResponse, i.initHash[:], body), r.sig[:]) {
		return nil, fmt.Errorf("%w: RESPONSE signature is not %s's", ErrAuth, i.peer.Short())
	}
	ss, err := dh(i.eph, r.ephemeral[:])
	if err != nil {
		return nil, err
	}
	th := transcriptHash(&i.initHash, body)
	k, err := deriveKeys(ss, &th)
	if err != nil {
		return nil, err
	}
	if !hmac.Equal(confirmMAC(k.confirm, &th), r.confirm[:]) {
		return nil, fmt.Errorf("%w: RESPONSE key confirmation", ErrAuth)
	}
	s, err := newSession(sessionConfig{
		peer:       i.peer,
		local:      i.index,
		remote:     r.sender,
		initiator:  true,
		initHash:   i.initHash,
		peerParams: append([]byte(nil), r.params...),
		sendKey:    k.i2r,
		recvKey:    k.r2i,
	})
	if err != nil {
		return nil, err
	}
	i.done, i.eph = true, nil
	return s, nil
}

func (i *Initiator) finishRefuse(msg []byte) error {
	r, err := parseRefuseMsg(msg)
	if err != nil {
		return err
	}
	if r.receiver != i.index {
		return fmt.Errorf("%w: REFUSE for index %08x, this handshake is %08x", ErrMisaddressed, r.receiver, i.index)
	}
	if !identity.Verify(i.peer, signedMsg(ctxRefuse, i.initHash[:], msg[:r.signedSize]), r.sig[:]) {
		return fmt.Errorf("%w: REFUSE signature is not %s's", ErrAuth, i.peer.Short())
	}
	i.done, i.eph = true, nil
	return &RefusedError{Peer: i.peer, Code: r.code, Reason: r.reason}
}

// ---- responder ----

// Init is a verified INIT: signed by Peer, addressed to the identity it was
// parsed for, fresh. It is immutable and safe for concurrent use.
type Init struct {
	id     *identity.Identity
	m      initMsg
	params []byte
	hash   [HashLen]byte
}

// HashInit returns the hash that identifies an INIT message: equal bytes,
// equal hash. It is cheap and verifies nothing; use it to spot a
// retransmitted INIT (compare with Session.InitHash) before ParseInit.
func HashInit(msg []byte) [HashLen]byte { return sha256.Sum256(msg) }

// ParseInit decodes and verifies an INIT received by id: it must be well
// formed (ErrMalformed, ErrVersion), addressed to id's SID
// (ErrMisaddressed), stamped within MaxInitSkew of now (ErrStale), and
// signed by the SID it names as initiator (ErrAuth). The cheap checks come
// before the signature check.
func ParseInit(msg []byte, id *identity.Identity, now time.Time) (*Init, error) {
	m, err := parseInitMsg(msg)
	if err != nil {
		return nil, err
	}
	if m.responder != id.SID() {
		return nil, fmt.Errorf("%w: INIT for %s, this node is %s", ErrMisaddressed, m.responder.Short(), id.SID().Short())
	}
	if m.millis > math.MaxInt64 {
		return nil, fmt.Errorf("%w: INIT timestamp %d", ErrStale, m.millis)
	}
	skew := now.Sub(time.UnixMilli(int64(m.millis)))
	if skew > MaxInitSkew || skew < -MaxInitSkew {
		return nil, fmt.Errorf("%w: INIT from %s is %v off this node's clock (max %v)", ErrStale, m.initiator.Short(), skew.Round(time.Millisecond), MaxInitSkew)
	}
	if !identity.Verify(m.initiator, signedMsg(ctxInit, msg[:m.signedSize]), m.sig[:]) {
		return nil, fmt.Errorf("%w: INIT signature is not %s's", ErrAuth, m.initiator.Short())
	}
	in := &Init{id: id, m: m, params: append([]byte(nil), m.params...), hash: HashInit(msg)}
	in.m.params = in.params // drop the alias to msg
	return in, nil
}

// Peer returns the initiator's SID, proven by its signature.
func (in *Init) Peer() identity.SID { return in.m.initiator }

// Params returns the initiator's params. The caller must not modify them.
func (in *Init) Params() []byte { return in.params }

// Hash returns HashInit of the INIT message.
func (in *Init) Hash() [HashLen]byte { return in.hash }

// Time returns the initiator's timestamp (millisecond precision). A caller
// that keeps one pending handshake per peer should let a new INIT replace
// the pending one only when its Time is later, so a replayed older INIT
// cannot disturb a handshake in progress.
func (in *Init) Time() time.Time { return time.UnixMilli(int64(in.m.millis)) }

// Accept answers the INIT. index is the caller's receive index for the new
// session (unique among its live sessions and handshakes; see
// NewInitiator), params (at most MaxParams bytes) are delivered to the
// initiator. It returns the RESPONSE to send and a Session that is not yet
// Confirmed: the caller must keep it apart from any established session with
// the same peer, and promote it (replacing the old one) only once Open has
// accepted a DATA packet on it. The INIT may be a replay by anyone who saw
// it, and only the real initiator can produce that DATA packet. The
// session's Seal works at once (only the initiator can read the packets),
// but until it is Confirmed the peer may not be there to receive them.
//
// Call Accept once per INIT: for a retransmitted INIT (same HashInit) resend
// Session.Response instead.
func (in *Init) Accept(index uint32, params []byte) (*Session, []byte, error) {
	if len(params) > MaxParams {
		return nil, nil, fmt.Errorf("seal: params of %d bytes (max %d)", len(params), MaxParams)
	}
	eph, err := newEphemeral()
	if err != nil {
		return nil, nil, err
	}
	ss, err := dh(eph, in.m.ephemeral[:])
	if err != nil {
		return nil, nil, err
	}
	r := responseMsg{receiver: in.m.index, sender: index, params: params}
	copy(r.ephemeral[:], eph.PublicKey().Bytes())
	body := r.appendBody(make([]byte, 0, respFixed+len(params)+sigLen+macLen))
	copy(r.sig[:], in.id.Sign(signedMsg(ctxResponse, in.hash[:], body)))
	th := transcriptHash(&in.hash, body)
	k, err := deriveKeys(ss, &th)
	if err != nil {
		return nil, nil, err
	}
	copy(r.confirm[:], confirmMAC(k.confirm, &th))
	msg := append(append(body, r.sig[:]...), r.confirm[:]...)
	s, err := newSession(sessionConfig{
		peer:       in.m.initiator,
		local:      index,
		remote:     in.m.index,
		initiator:  false,
		initHash:   in.hash,
		response:   msg,
		peerParams: in.params,
		sendKey:    k.r2i,
		recvKey:    k.i2r,
	})
	if err != nil {
		return nil, nil, err
	}
	return s, msg, nil
}

// Refuse returns a REFUSE for the INIT, signed by the responder and bound
// to this INIT, so the initiator can tell it from a forgery and it cannot
// be replayed against another handshake. reason is cut to MaxReason bytes
// (at a UTF-8 boundary; invalid UTF-8 is replaced). Each call signs, so a
// caller that refuses repeated INITs should cache the result by Hash.
func (in *Init) Refuse(code RefuseCode, reason string) []byte {
	reason = strings.ToValidUTF8(reason, "\uFFFD")
	for len(reason) > MaxReason {
		_, size := utf8.DecodeLastRuneInString(reason)
		reason = reason[:len(reason)-size]
	}
	r := refuseMsg{receiver: in.m.index, code: code, reason: reason}
	body := r.appendBody(make([]byte, 0, refuseFixed+len(reason)+sigLen))
	return append(body, in.id.Sign(signedMsg(ctxRefuse, in.hash[:], body))...)
}
