// Command kstatus prints the kstatus status of one object, as Flux, kpt and
// `kubectl wait`-style tools compute it with sigs.k8s.io/cli-utils/pkg/kstatus/status:
//
//	kstatus [FILE|-]   ->   {"status": "Current", "message": "Resource is Ready"}
//
// The status is one of InProgress, Current, Failed, Terminating, NotFound or Unknown.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	"cloudvol.dev/hack/gitops/internal/object"
)

func main() {
	path := "-"
	switch len(os.Args) {
	case 1:
	case 2:
		path = os.Args[1]
	default:
		fmt.Fprintln(os.Stderr, "usage: kstatus [FILE|-]")
		os.Exit(2)
	}
	obj, err := object.Read(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
	result, err := status.Compute(obj)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
	out, _ := json.Marshal(map[string]string{
		"status":  result.Status.String(),
		"message": result.Message,
	})
	fmt.Println(string(out))
}
