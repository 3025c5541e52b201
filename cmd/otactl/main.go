// Command otactl verifies firmware on a few devices over MQTT before any batch
// upgrade may use it, and then rolls it out. See README.md and docs/.
package main

import (
	"os"

	"github.com/otactl/otactl/cmd"
)

func main() { os.Exit(cmd.Main(os.Args[1:], cmd.SystemIO())) }
