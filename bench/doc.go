// Package bench holds otactl's end-to-end benchmarks, each measured beside a
// bare baseline in the same run: device messages from a local Mosquitto
// through the session, the rules and the bbolt state file; reads of a large
// fleet; and batch upgrades. They start brokers and write files of many
// megabytes, so they live apart from the unit tests and run only when
// asked, for example:
//
//	go test ./bench -run '^$' -bench Ingest -benchtime 1x -timeout 60m
//
// docs/performance.md records what every benchmark here measured
// and what limits each figure.
package bench
