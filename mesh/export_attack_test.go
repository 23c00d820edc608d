package mesh

// FreshIDs gives the external attack tests (attack_udp_test.go) freshIDs:
// k identities made from seeds, fast and reproducible.
var FreshIDs = freshIDs
