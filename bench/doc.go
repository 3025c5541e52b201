// Package bench holds otactl's end-to-end benchmarks: device messages from a
// local Mosquitto through the session, the rules and the bbolt state file,
// measured beside a bare paho subscriber in the same run, and reads of a
// large fleet. They start a broker and write files of several megabytes, so
// they live apart from the unit tests and run only when asked:
//
//	go test ./bench -run '^$' -bench . -benchtime 1x
//
// docs/performance.md records what they measured and what limits each figure.
package bench
