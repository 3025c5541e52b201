// Package ota is otactl's domain: firmware, devices, verification rounds,
// batch tasks and per-device jobs, with their state machines and the rules
// that guard them.
//
// The package does no I/O of its own. It declares the persistence it needs
// (Store and Tx) and takes the current time as an argument (Env), so every
// rule can be tested with an in-memory store and a fixed clock. Pushes leave
// through an outbox: a rule that decides a device must be pushed writes the
// push in the same transaction, and the caller sends the outbox after
// commit (transport.Session.PushAll) and records each acknowledgement with
// MarkPushed. The state package implements Store on bbolt; cmd wires them.
package ota
