// Package protodoc lets a package's tests check that the constants
// docs/PROTOCOL.md quotes are the ones in the code: each test builds the
// sentence from its constants and Check looks for it in the document, with
// runs of white space folded, so that a changed constant fails the test of
// the package that owns it until the document says the same.
package protodoc
