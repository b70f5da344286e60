package manager

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// killLeftovers kills the process groups that executors on this machine
// recorded for a run and did not remove: tasks of an executor that died
// (killed, crashed, or killed with its Manager) before it could kill them.
// Only groups whose leader still carries the run's WIZ_RUN_ID are killed, so
// a process ID reused since is left alone.
func (m *Manager) killLeftovers(runID string) {
	if m.taskDir == "" || runID == "" {
		return
	}
	dir := filepath.Join(m.taskDir, runID)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	mark := []byte("WIZ_RUN_ID=" + runID)
	for _, pgid := range leftGroups(dir, ents) {
		if env, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pgid), "environ")); err == nil && hasEntry(env, mark) {
			if err := syscall.Kill(-pgid, syscall.SIGKILL); err == nil {
				m.log.Warn("killed processes a dead executor left running", "run", runID, "pgid", pgid)
			}
		} else {
			// The leader is gone (or its ID was reused): the group's members
			// that carry the mark are killed one by one.
			m.killMarked(pgid, mark)
		}
	}
	os.RemoveAll(dir)
}

// leftGroups returns the process groups the executors' task journals in dir
// record as started ("+PGID") and not ended ("-PGID").
func leftGroups(dir string, ents []os.DirEntry) []int {
	var out []int
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".journal") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		open := map[int]bool{}
		var order []int
		for _, line := range strings.Split(string(b), "\n") {
			if len(line) < 2 {
				continue // the last line may be cut short by a crash
			}
			pgid, err := strconv.Atoi(line[1:])
			if err != nil || pgid <= 1 {
				continue
			}
			switch line[0] {
			case '+':
				if !open[pgid] {
					order = append(order, pgid)
				}
				open[pgid] = true
			case '-':
				open[pgid] = false
			}
		}
		for _, pgid := range order {
			if open[pgid] {
				out = append(out, pgid)
				open[pgid] = false
			}
		}
	}
	return out
}

// killMarked kills the members of process group pgid that carry mark.
func (m *Manager) killMarked(pgid int, mark []byte) {
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, st := range procs {
		b, err := os.ReadFile(st)
		if err != nil {
			continue
		}
		// Fields after the command's closing parenthesis: state ppid pgrp …
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(b[i+1:])
		if len(f) < 3 || string(f[2]) != strconv.Itoa(pgid) {
			continue
		}
		dir := filepath.Dir(st)
		env, err := os.ReadFile(filepath.Join(dir, "environ"))
		if err != nil || !hasEntry(env, mark) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(dir)); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			m.log.Warn("killed a process a dead executor left running", "pid", pid)
		}
	}
}

func hasEntry(env, entry []byte) bool {
	for _, e := range bytes.Split(env, []byte{0}) {
		if bytes.Equal(e, entry) {
			return true
		}
	}
	return false
}
