// Command argocd-health runs an Argo CD health check written in Lua over one object, the way
// Argo CD runs a `resource.customizations.health.<group>_<kind>` script:
//
//	argocd-health -script health.lua [FILE|-]   ->   {"status": "Healthy", "message": "..."}
//
// It mirrors argo-cd's util/lua (runLua and ExecuteHealthLua): gopher-lua with only the
// package, base and table libraries open (no string library unless -open-libs, which is
// Argo CD's `useOpenLibs`), the object as the global `obj` (maps to tables, lists to
// array tables, numbers to Lua numbers), a one-second limit, and a result that must be a
// table whose status is one of Argo CD's health codes (otherwise Unknown, as Argo CD says).
//
// Argo CD itself never runs a health script for an object that has a deletionTimestamp: its
// gitops-engine reports such an object as Progressing "Pending deletion" first. This command
// runs the script regardless, so that the script's own handling of deletion is tested too.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"

	"cloudvol.dev/hack/gitops/internal/object"
)

var healthCodes = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true,
	"Healthy": true, "Degraded": true, "Missing": true,
}

func main() {
	script := flag.String("script", "", "the Lua health check (required)")
	openLibs := flag.Bool("open-libs", false, "open every standard library, as Argo CD's useOpenLibs does")
	flag.Parse()
	if *script == "" || flag.NArg() > 1 {
		fmt.Fprintln(os.Stderr, "usage: argocd-health -script FILE.lua [FILE|-]")
		os.Exit(2)
	}
	path := "-"
	if flag.NArg() == 1 {
		path = flag.Arg(0)
	}
	source, err := os.ReadFile(*script)
	if err != nil {
		fail(err)
	}
	obj, err := object.Read(path)
	if err != nil {
		fail(err)
	}
	status, message, err := run(string(source), obj.Object, *openLibs)
	if err != nil {
		fail(err)
	}
	out, _ := json.Marshal(map[string]string{"status": status, "message": message})
	fmt.Println(string(out))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "argocd-health:", err)
	os.Exit(1)
}

func run(script string, obj map[string]any, openLibs bool) (string, string, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: !openLibs})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return "", "", err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", decode(l, obj))
	if err := l.DoString(script); err != nil {
		return "", "", err
	}
	result, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("expect table output from Lua script, not %s", l.Get(-1).Type())
	}
	status := stringField(result, "status")
	if !healthCodes[status] {
		return "Unknown", "Lua returned an invalid health status", nil
	}
	return status, stringField(result, "message"), nil
}

func stringField(table *lua.LTable, key string) string {
	switch v := table.RawGetString(key).(type) {
	case lua.LString:
		return string(v)
	case lua.LNumber:
		return v.String()
	default:
		return ""
	}
}

// decode is argo-cd's decodeValue: how a live object reaches the script.
func decode(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		table := l.CreateTable(len(v), 0)
		for _, item := range v {
			table.Append(decode(l, item))
		}
		return table
	case map[string]any:
		table := l.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetH(lua.LString(key), decode(l, item))
		}
		return table
	}
	return lua.LNil
}
