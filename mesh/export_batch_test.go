package mesh

// Batching reports whether n reads and writes its socket in batches.
func Batching(n *Node) bool { return n.batch != nil }
