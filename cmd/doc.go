// Package cmd holds otactl's cobra commands: flag parsing, configuration,
// output formatting and exit codes. Rules live in package ota; a command
// builds its options, opens what it needs and calls into ota.
package cmd
