// Package state keeps otactl's records in one bbolt file and implements
// ota.Store on it.
//
// The file holds a meta bucket (an app marker and a schema version) and one
// bucket per record kind. Records are JSON, keyed by the big-endian sequence
// number of their ID, so iteration is creation order and new records are
// appended at the end of the B+tree, which bbolt writes far more cheaply
// than keys in random order. Secondary indexes (firmware by version, rounds
// by firmware, history by subject) are kept in the same transaction as the
// records they point to, and Check verifies that they agree. The sets that
// ota keeps as its own indexes share one bucket, keyed by set name, a NUL
// byte and member, so that a walk from any member starts with a seek.
//
// Opening follows the reliability rules of DESIGN.md section 7: a lock
// timeout instead of a hang when another process holds the file, an error
// naming the file (never a panic, never a rewrite) when it is not an otactl
// state file, refusal of a newer schema and migration of an older one inside
// one write transaction.
//
// Files, in files.go, is the content-addressed store of firmware images kept
// beside the state file.
package state
