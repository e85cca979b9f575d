// Command nodectl is the Ballast command line.
package main

import "github.com/ballast-os/ballast/pkg/nodectl"

func main() { nodectl.Execute() }
