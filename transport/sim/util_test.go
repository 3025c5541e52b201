package sim

import (
	"encoding/pem"
	"strconv"
)

func itoa(i int) string { return strconv.Itoa(i) }

func pemOf(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
