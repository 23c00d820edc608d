// Package identity holds a node's Ed25519 identity and its keyring file.
// A SID (Serval ID) is the 32-byte Ed25519 public key itself, so an address
// cannot be claimed without the private key that signs for it.
package identity
