package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wiz-run/wiz/sdk/executor"
)

// adoptionName is the file in an executor's directory that says how to
// reach it, written for executors that may outlive this backend (an orphan
// timeout): 0600, in the 0700 directory that holds its socket.
const adoptionName = "adopt.json"

type adoption struct {
	PID      int               `json:"pid"`
	Endpoint executor.Endpoint `json:"endpoint"`
	Remote   bool              `json:"remote"`
}

// adopted is an executor an earlier process of this backend started.
type adopted struct {
	pid int
	dir string
}

func writeAdoption(dir string, a adoption) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, adoptionName), b, 0o600); err != nil {
		return fmt.Errorf("local executor: %w", err)
	}
	return nil
}

// Adopt implements executor.Adopter: a restarted service takes over an
// executor that an earlier process of this backend started for it, before
// it was killed; the executor waits for it for its orphan timeout.
func (b *backend) Adopt(_ context.Context, req *executor.AdoptRequest) (*executor.AdoptResponse, error) {
	pidText, dir, ok := strings.Cut(strings.TrimPrefix(req.ExecutorID, "local-"), "@")
	pid, err := strconv.Atoi(pidText)
	if !ok || err != nil || !strings.HasPrefix(filepath.Base(dir), "wiz-executor-") {
		return nil, fmt.Errorf("local executor: adopt %q: not an executor that outlives its service: %w", req.ExecutorID, executor.ErrGone)
	}
	if !held(dir) {
		return nil, fmt.Errorf("local executor: adopt %s: it has exited: %w", req.ExecutorID, executor.ErrGone)
	}
	raw, err := os.ReadFile(filepath.Join(dir, adoptionName))
	if err != nil {
		return nil, fmt.Errorf("local executor: adopt %s: %w: %w", req.ExecutorID, err, executor.ErrGone)
	}
	var a adoption
	if err := json.Unmarshal(raw, &a); err != nil || a.PID != pid {
		return nil, fmt.Errorf("local executor: adopt %s: %s is not its record: %w", req.ExecutorID, adoptionName, executor.ErrGone)
	}
	b.mu.Lock()
	b.adopted[req.ExecutorID] = &adopted{pid: pid, dir: dir}
	b.mu.Unlock()
	b.log.Info("adopted an executor", "id", req.ExecutorID, "run", req.RunID)
	return &executor.AdoptResponse{Endpoint: a.Endpoint, Remote: a.Remote}, nil
}

// held reports whether an executor (or a backend) still holds dir's lock.
func held(dir string) bool {
	f, err := os.Open(filepath.Join(dir, lockName))
	if err != nil {
		return false
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	return errors.Is(err, syscall.EWOULDBLOCK)
}

// stopAdopted ends an adopted executor (not this process's child): SIGTERM,
// SIGKILL to its process group after the grace period; it is gone once its
// directory's lock is free. Then the directory is removed.
func stopAdopted(a *adopted) {
	if held(a.dir) {
		_ = syscall.Kill(a.pid, syscall.SIGTERM)
		deadline := time.Now().Add(stopGrace)
		for held(a.dir) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond) // not our child: nothing to wait on
		}
		if held(a.dir) {
			_ = syscall.Kill(-a.pid, syscall.SIGKILL)
			for deadline := time.Now().Add(stopGrace); held(a.dir) && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	os.RemoveAll(a.dir)
}
