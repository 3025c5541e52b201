// Package transport speaks otactl's device protocol (DESIGN.md section 3, the
// EnOS OTA topics and payloads) over MQTT: topic builders and parsers, the
// request and reply envelopes, validation of everything a device sends, the
// paho client with its persistent session and drain, and the device
// simulator (package transport/sim).
//
// Commands receive through a Session (Open, Drain, Run, Close), which
// applies device messages in batches and acknowledges them to the broker
// only after the caller committed them; a command that must not receive
// (an agent holds the session) pushes through Dial with a nil Handler.
//
// Everything received is untrusted: a message is parsed into an ota.Report,
// and one that fails validation is reported with its reason instead of being
// dropped silently, so that it reaches the history without changing state.
package transport
