// Package seal is MSP's session security: a signed ephemeral-X25519 key
// exchange between two nodes identified by their Ed25519 SIDs, and the
// ChaCha20-Poly1305 record layer that protects every MSP packet after it.
//
// The package is pure: no goroutines, no I/O, no clock (time is passed in).
// The msp package carries its packets as MDP datagrams, which may be lost,
// duplicated, reordered, replayed, or forged by anyone on the path.
//
// # Properties
//
//   - Mutual authentication: the initiator signs its INIT (which names the
//     responder's SID) with its identity; the responder signs its RESPONSE
//     over the hash of that INIT. Each side is known by its SID only.
//   - Forward secrecy: both sides use a fresh X25519 key pair per handshake;
//     the session keys depend only on the ephemeral secret and the
//     transcript, so a later theft of an identity key does not reveal them.
//   - Key confirmation: the RESPONSE carries an HMAC under a key derived
//     from the session secret (the initiator knows the responder derived
//     the same keys); the responder treats its session as unconfirmed until
//     a DATA packet from the initiator authenticates (a replayed INIT can
//     produce a RESPONSE, never such a packet).
//   - Records: ChaCha20-Poly1305, one key per direction, the nonce is the
//     64-bit packet counter, the header is additional data, a replay window
//     of ReplayWindow packets accepts reordered packets once.
//   - Refusal: a REFUSE is signed by the responder and bound to the INIT it
//     answers, so nobody else can refuse on its behalf and an old refusal
//     cannot be replayed against a new handshake.
//
// # How the msp package drives it
//
// Initiator: NewInitiator; send Message(); resend the same bytes on a
// timer; feed every packet whose ReceiverIndex is its LocalIndex to Finish
// until it returns a Session or a *RefusedError (other errors: drop the
// packet and keep waiting); then send a DATA packet at once (empty is fine)
// so the responder can confirm the session.
//
// Responder, on an INIT:
//  1. h := HashInit(pkt). If a pending or established session for this
//     INIT exists (Session.InitHash() == h), resend its Response() and stop;
//     if a refusal was cached under h, resend it.
//  2. in, err := ParseInit(pkt, id, now); on error drop the packet (never
//     answer: the sender is not authenticated).
//  3. If policy rejects in.Peer(), send in.Refuse(code, text) (cache it by h).
//  4. s, resp, err := in.Accept(index, params); keep s as the peer's pending
//     session, in the index table but not in place of the peer's
//     established session; send resp. Keep at most one pending session per
//     peer, replaced only by an INIT with a later in.Time(), and expire it
//     after the handshake timeout.
//
// On a DATA packet: find the Session by ReceiverIndex, Open it; if that
// succeeds on a pending session, it is now Confirmed: make it the peer's
// established session and retire the old one. A replayed INIT therefore
// costs a RESPONSE and a pending slot, and can never replace or kill a live
// session.
//
// Index allocation is the caller's: every LocalIndex passed to NewInitiator
// and Accept must be unique among its live sessions and handshakes.
// Rekeying is a new handshake; Seal refuses to go past MaxPackets.
//
// # Wire format
//
// All integers are big-endian. SIDs are 32-byte Ed25519 public keys,
// ephemerals 32-byte X25519 public keys, signatures 64-byte Ed25519.
// H is SHA-256. "||" is concatenation.
//
// INIT (type 0x01), initiator to responder, 176+P bytes:
//
//	off  len  field
//	0    1    type 0x01
//	1    1    version 0x01
//	2    32   initiator SID
//	34   32   responder SID
//	66   32   initiator ephemeral X25519 public key
//	98   4    initiator index (the receiver index of every reply and DATA packet it gets)
//	102  8    timestamp, Unix milliseconds
//	110  2    P, params length (<= 256)
//	112  P    params (opaque, from the caller)
//	112+P 64  signature by the initiator over "servald msp seal v1 INIT\x00" || bytes[0:112+P]
//
// The responder rejects an INIT not addressed to its SID, with a timestamp
// more than 2 minutes from its clock, or whose signature does not verify
// under the initiator SID it carries. h_init = H(the whole INIT).
//
// RESPONSE (type 0x02), responder to initiator, 139+P bytes:
//
//	off   len  field
//	0     1    type 0x02
//	1     4    receiver index (the initiator's index, echoed)
//	5     4    responder index
//	9     32   responder ephemeral X25519 public key
//	41    2    P, params length (<= 256)
//	43    P    params
//	43+P  64   signature by the responder over "servald msp seal v1 RESPONSE\x00" || h_init || bytes[0:43+P]
//	107+P 32   confirm = HMAC-SHA256(k_confirm, th)
//
// Key schedule, on both sides:
//
//	ss        = X25519(own ephemeral private, peer ephemeral public)   (all-zero result rejected)
//	th        = H("servald msp seal v1 transcript\x00" || h_init || RESPONSE bytes[0:43+P])
//	prk       = HKDF-Extract(SHA-256, salt = th, ikm = ss)
//	k_i2r     = HKDF-Expand(prk, "servald msp seal v1 key initiator to responder", 32)
//	k_r2i     = HKDF-Expand(prk, "servald msp seal v1 key responder to initiator", 32)
//	k_confirm = HKDF-Expand(prk, "servald msp seal v1 key confirmation", 32)
//
// REFUSE (type 0x03), responder to initiator, 71+L bytes:
//
//	off   len  field
//	0     1    type 0x03
//	1     4    receiver index (the initiator's index, echoed)
//	5     1    code: 0 unspecified, 1 not allowed, 2 no listener, 3 busy (others reported as numbers)
//	6     1    L, reason length (<= 128)
//	7     L    reason, UTF-8 text
//	7+L   64   signature by the responder over "servald msp seal v1 REFUSE\x00" || h_init || bytes[0:7+L]
//
// DATA (type 0x04), either direction, 29+N bytes for N bytes of plaintext:
//
//	off  len   field
//	0    1     type 0x04
//	1    4     receiver index (the receiving side's index from the handshake)
//	5    8     counter: 0, 1, 2, ... per session and direction, < 2^60
//	13   N+16  ChaCha20-Poly1305 ciphertext and tag
//
// The key is k_i2r from the initiator, k_r2i from the responder; the
// 12-byte nonce is bytes[1:13] (receiver index || counter: the index is
// fixed for a session and direction, so the nonce never repeats under a
// key); the additional data is bytes[0:13]. A receiver accepts a counter once, and only if it is at
// most 8128 below the highest counter it has accepted.
package seal
