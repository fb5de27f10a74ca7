// Command hello is the workload whose image the test drops onto the node:
// it prints a line and exits 0.
package main

import "fmt"

func main() {
	fmt.Println("hello from an image imagedrop imported")
}
