// Package object reads one Kubernetes object, as YAML or JSON, from a file or stdin.
package object

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// Read reads the object in path ("-" or "" for stdin). In a multi-document YAML file the first
// document that is not empty (comments only) is the object.
func Read(path string) (*unstructured.Unstructured, error) {
	var data []byte
	var err error
	if path == "" || path == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	for _, doc := range splitDocuments(data) {
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		// Through JSON into Unstructured, so that integers are int64 as in a live object
		// (kstatus refuses a float64 generation).
		data, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name(path), err)
		}
		if string(bytes.TrimSpace(data)) == "null" {
			continue
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(data); err != nil {
			return nil, fmt.Errorf("%s: %w", name(path), err)
		}
		return obj, nil
	}
	return nil, fmt.Errorf("%s holds no object", name(path))
}

func name(path string) string {
	if path == "" || path == "-" {
		return "stdin"
	}
	return path
}

func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	var current []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.TrimRight(line, " \t\r") == "---" {
			docs = append(docs, []byte(strings.Join(current, "\n")))
			current = nil
			continue
		}
		current = append(current, line)
	}
	return append(docs, []byte(strings.Join(current, "\n")))
}

func stripComments(doc []byte) []byte {
	var kept []string
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			kept = append(kept, line)
		}
	}
	return []byte(strings.Join(kept, "\n"))
}
