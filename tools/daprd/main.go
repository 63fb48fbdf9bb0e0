// Command daprd is the Dapr sidecar runtime, exactly as dapr's own
// cmd/daprd builds it. Build it with `-tags stablecomponents` (or
// allcomponents): without a components tag, daprd panics at start.
package main

import "github.com/dapr/dapr/cmd/daprd/app"

func main() {
	app.Run()
}
