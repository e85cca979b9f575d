// Command machined is the Ballast node agent.
package main

import "github.com/ballast-os/ballast/machined/app"

func main() { app.Main() }
