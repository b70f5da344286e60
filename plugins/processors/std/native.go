package main

import (
	"context"
	"fmt"
	"sort"

	"github.com/wiz-run/wiz/sdk/processor"
)

// nativeConfig is the config shared by exec and shell.
type nativeConfig struct {
	Command []string          `json:"command"`
	Script  string            `json:"script"`
	Shell   string            `json:"shell"`
	Env     map[string]string `json:"env"`
	Dir     string            `json:"dir"`
	Stdin   string            `json:"stdin"`
	Stdout  *bool             `json:"stdout"`
	Outputs map[string]string `json:"outputs"`
	Clean   bool              `json:"clean_env"`
}

var nativeFields = []processor.Field{
	{Name: "env", Type: "map", Doc: "environment variables added to the program's environment"},
	{Name: "dir", Type: "string", Doc: "working directory; default: a fresh temporary directory per task"},
	{Name: "stdin", Type: "string", Default: "stdin", Doc: "name of the input fed to stdin"},
	{Name: "stdout", Type: "bool", Default: true, Doc: "collect stdout as the output \"out\""},
	{Name: "outputs", Type: "outputs", Doc: "files the program writes, as NAME: PATH (relative to the working directory)"},
	{Name: "clean_env", Type: "bool", Default: false, Doc: "start from an empty environment instead of the executor's"},
}

func execType() processor.Type {
	return processor.Type{
		Name: "exec",
		Doc:  "Runs any native program on the executor's host: argv, env, working dir, stdin from an input, stdout and declared files as outputs. A non-zero exit fails the processor; stderr lines ::warning::TEXT become warnings.",
		Fields: append([]processor.Field{
			{Name: "command", Type: "list of string", Required: true, Doc: "argv: the program (absolute path or looked up in PATH) and its arguments"},
		}, nativeFields...),
		Outputs: []string{"out"}, // and the keys of outputs:
		Native:  processor.NativeFunc(planExec),
	}
}

func shellType() processor.Type {
	return processor.Type{
		Name: "shell",
		Doc:  "Runs a shell script (sh -c by default) with the same inputs and outputs as exec.",
		Fields: append([]processor.Field{
			{Name: "script", Type: "script", Required: true, Doc: "the script; each ${{ EXPR }} in it reaches the shell as a variable (${WIZ_EXPR_n}), never as script text"},
			{Name: "shell", Type: "string", Default: "/bin/sh", Doc: "the shell that runs the script with -c"},
		}, nativeFields...),
		Outputs: []string{"out"}, // and the keys of outputs:
		Native:  processor.NativeFunc(planShell),
	}
}

func planExec(_ context.Context, req *processor.PlanRequest) (*processor.Plan, error) {
	var c nativeConfig
	if err := req.Decode(&c); err != nil {
		return nil, err
	}
	if len(c.Command) == 0 || c.Command[0] == "" {
		return nil, fmt.Errorf("std/exec: command must name a program, e.g. command: [echo, hello]")
	}
	return plan(c, c.Command), nil
}

func planShell(_ context.Context, req *processor.PlanRequest) (*processor.Plan, error) {
	var c nativeConfig
	if err := req.Decode(&c); err != nil {
		return nil, err
	}
	if c.Script == "" {
		return nil, fmt.Errorf("std/shell: script is empty; set with: {script: \"echo hello\"}")
	}
	return plan(c, []string{c.Shell, "-c", c.Script}), nil
}

func plan(c nativeConfig, argv []string) *processor.Plan {
	p := &processor.Plan{
		Argv:       argv,
		Env:        c.Env,
		InheritEnv: !c.Clean,
		Dir:        c.Dir,
		Stdin:      c.Stdin,
		Stdout:     c.Stdout == nil || *c.Stdout,
	}
	names := make([]string, 0, len(c.Outputs))
	for n := range c.Outputs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p.Outputs = append(p.Outputs, processor.PlanOutput{Name: n, Path: c.Outputs[n]})
	}
	return p
}
