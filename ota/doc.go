// Package ota is otactl's domain: firmware, devices, verification rounds,
// batch tasks and per-device jobs, with their state machines and the rules
// that guard them.
//
// The package does no I/O of its own. It declares the small interfaces it
// needs (Store and Tx for persistence, Publisher for pushes) and takes the
// current time as an argument, so every rule can be tested with an in-memory
// store and a fixed clock. The state package implements Store on bbolt and
// the transport package implements Publisher on MQTT; cmd wires them.
package ota
