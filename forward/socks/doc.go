// Package socks is a SOCKS5 front end and exit for tunnelled streams: a local
// SOCKS5 server (RFC 1928 CONNECT, optional RFC 1929 username/password)
// turns each client connection into one tunnelled stream (an MSP stream),
// and an Exit at the far end dials the destination named in the stream's
// first bytes, subject to Rules.
//
//	SOCKS client ─► Server.ServeConn: greeting, auth, CONNECT request
//	            ─► open(ctx) stream ─► Request header ─────────► Exit.Handle
//	                                                              Rules, resolve, dial
//	SOCKS reply ◄─ status from the exit ◄─ Reply (status, bound) ◄┘
//	            ◄► forward.Join(client, stream) ◄──────────────► forward.Join(stream, target)
//
// Domain names travel to the exit unresolved (as with socks5h): the exit
// resolves them, checks the addresses against the rules, and dials only an
// address that passed, so a name cannot be made to point somewhere the rules
// forbid between check and dial. The wire layout of the Request and Reply
// is in docs/PROTOCOL.md, section "SOCKS over MSP".
//
// Rules: a zero Rules refuses every destination. Build them with ParseRules
// from the --to arguments, or AllowAll for an exit that may reach anything;
// Rules.Empty tells a caller that no rule was given, so that it can refuse
// to start an open proxy.
//
// Auth file (--socks-auth): one "user:password" per line, split at the first
// colon (a password may contain colons, a user may not); both 1-255 bytes.
// Lines that are empty or only blanks, and lines whose first non-blank
// character is '#', are ignored; a final '\r' is dropped; other blanks are
// part of the name or password. A file with no user is an error.
package socks
