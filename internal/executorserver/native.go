package executorserver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"google.golang.org/protobuf/proto"

	"github.com/wiz-run/wiz/core/secrets"
	"github.com/wiz-run/wiz/internal/pluginhost"
	"github.com/wiz-run/wiz/proto/wizpb"
	"github.com/wiz-run/wiz/proto/wizrpc"
	"github.com/wiz-run/wiz/sdk/blob"
)

// filesRefRE matches "${{ files.NAME }}" in a plan's argv and env: the path
// of input NAME placed in the task's working dir. It is substituted by the
// executor per task, so plans stay cacheable per config; the pipeline's own
// "${{ inputs.NAME }}" is substituted by the Manager before, and never
// matches.
var filesRefRE = regexp.MustCompile(`\$\{\{\s*files\.([A-Za-z0-9_-]+)\s*\}\}`)

// stderrTail is how much of stderr a failure message quotes.
const stderrTail = 2048

// cachedPlan is a plan with its program resolved and its environment built,
// so that a task of a cached config costs no pack call and no PATH search.
type cachedPlan struct {
	plan *wizrpc.Plan
	path string
	env  []string
}

// planFile is where a plan is cached on disk.
func (s *Server) planFile(key string) string {
	sum := sha256.Sum256([]byte(key))
	return filepath.Join(s.cfg.CacheDir, hex.EncodeToString(sum[:])+".plan")
}

func (s *Server) diskPlan(key string) *wizrpc.Plan {
	if s.cfg.CacheDir == "" {
		return nil
	}
	b, err := os.ReadFile(s.planFile(key))
	if err != nil {
		return nil
	}
	p := &wizrpc.Plan{}
	if proto.Unmarshal(b, p) != nil {
		return nil
	}
	return p
}

// storePlan writes a plan to the disk cache, atomically; failures only cost
// a pack call next time.
func (s *Server) storePlan(key string, p *wizrpc.Plan) {
	if s.cfg.CacheDir == "" {
		return
	}
	b, err := proto.Marshal(p)
	if err != nil {
		return
	}
	if err := os.MkdirAll(s.cfg.CacheDir, 0o755); err != nil {
		return
	}
	f, err := os.CreateTemp(s.cfg.CacheDir, "plan-*")
	if err != nil {
		return
	}
	_, werr := f.Write(b)
	if cerr := f.Close(); werr != nil || cerr != nil {
		os.Remove(f.Name())
		return
	}
	if os.Rename(f.Name(), s.planFile(key)) != nil {
		os.Remove(f.Name())
	}
}

// verifyPack checks a pack binary's digest once per executor, for a task
// served from the plan cache. A pack from a blob was checked by its digest
// when it was stored.
func (s *Server) verifyPack(ref *wizrpc.PackRef) error {
	if ref.Path == "" {
		return nil
	}
	s.mu.Lock()
	err, done := s.verified[ref.Sha256]
	s.mu.Unlock()
	if done {
		return err
	}
	err = pluginhost.Verify(pluginhost.Config{Name: ref.Name + "@" + ref.Version, Path: ref.Path, SHA256: ref.Sha256,
		VerifiedFile: filepath.Join(s.cfg.CacheDir, "verified.json")})
	s.mu.Lock()
	s.verified[ref.Sha256] = err
	s.mu.Unlock()
	return err
}

func typeName(t string) string {
	if i := strings.LastIndexByte(t, '/'); i >= 0 {
		return t[i+1:]
	}
	return t
}

// plan returns the invocation plan for a native task. A plan depends only on
// the pack binary, the type and the config, so it is asked of the pack the
// first time a config is seen and kept in memory and, with a cache dir, on
// disk for later runs.
func (s *Server) plan(ctx context.Context, t *wizrpc.Task) (*cachedPlan, error) {
	key := t.Pack.Sha256 + "\x00" + t.Type + "\x00" + string(t.ConfigJson)
	s.mu.Lock()
	cp := s.plans[key]
	s.mu.Unlock()
	if cp != nil {
		return cp, nil
	}
	p := s.diskPlan(key)
	if p != nil {
		// The pack will not run, so its digest is not checked at launch:
		// a binary changed after install is refused here as it would be
		// there.
		if err := s.verifyPack(t.Pack); err != nil {
			return nil, err
		}
	}
	if p == nil {
		e, err := s.pack(t.Pack)
		if err != nil {
			return nil, err
		}
		if p, err = e.pack.Plan(ctx, typeName(t.Type), t.ConfigJson); err != nil {
			return nil, fmt.Errorf("%s: %w", t.Type, err)
		}
		s.storePlan(key, p)
	}
	if len(p.Argv) == 0 {
		return nil, fmt.Errorf("%s: the pack planned no program", t.Type)
	}
	path := p.Argv[0]
	if !strings.Contains(path, "/") {
		var err error
		if path, err = exec.LookPath(path); err != nil {
			return nil, fmt.Errorf("%s: program %q is not in PATH on the executor's host", t.Type, p.Argv[0])
		}
	}
	var env []string
	if p.InheritEnv {
		env = os.Environ()
	}
	keys := make([]string, 0, len(p.Env))
	for k := range p.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+p.Env[k])
	}
	env, err := planEnv(env)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.Type, err)
	}
	cp = &cachedPlan{plan: p, path: path, env: env}
	s.mu.Lock()
	s.plans[key] = cp
	s.mu.Unlock()
	return cp, nil
}

// runNative carries out an invocation plan: the executor starts the program
// itself, in its own process group, and collects its outputs and rusage.
func (s *Server) runNative(ctx context.Context, t *wizrpc.Task, cp *cachedPlan, emit func(*wizrpc.ExecuteEvent)) {
	p := cp.plan
	var mask *secrets.Masker // the task's secrets, masked in all it sends
	if len(t.Secrets) > 0 {
		mask = secretsMasker(t)
		emit = maskEvents(mask, emit)
	}
	fail := func(msg string, started bool) {
		emit(finished(wizrpc.Outcome_OUTCOME_FAILED, 0, msg, started))
	}
	// A cached result's task: reused when its program is unchanged; either
	// way the program's digest goes back with the Finished.
	var program string
	if t.ReportProgram || t.ReuseProgramSha256 != "" {
		sum, err := s.progs.digest(cp.path, p.Dir)
		if err != nil {
			fail(err.Error(), false)
			return
		}
		program = sum
		if sum == t.ReuseProgramSha256 {
			ev := finished(wizrpc.Outcome_OUTCOME_SUCCEEDED, 0, "", false)
			ev.GetFinished().ProgramSha256, ev.GetFinished().Reused = sum, true
			emit(ev)
			return
		}
	}
	refs, err := fileRefs(p, t.Inputs)
	if err != nil {
		fail(err.Error(), false)
		return
	}
	for v, name := range t.FileEnv { // a script's ${{ files.NAME }}
		if _, ok := t.Inputs[name]; !ok {
			fail(fmt.Sprintf("${{ files.%s }} refers to input %q, which the processor does not have", name, name), false)
			return
		}
		if refs == nil {
			refs = map[string]bool{}
		}
		refs[name] = true
		_ = v
	}
	dir := p.Dir
	// releaseDir gives a pooled working dir back. It runs before the
	// task's Finished is sent (see end): the Manager's next task then finds
	// it free, where a put deferred past the Finished would have it make a
	// new one almost every time.
	var releaseDir func()
	removeSecretFiles := func() {} // set when the task has secret files
	defer func() {
		if releaseDir != nil {
			releaseDir()
		}
	}()
	// A task that places no input files in its dir takes a pooled one only
	// once it has a slot: tasks queued for a slot then hold none, and the
	// pool keeps about as many dirs as there are slots.
	lateDir := false
	if dir == "" && !t.KeepTemp {
		lateDir = true
		for name := range t.Inputs {
			if name != p.StdinInput || refs[name] {
				lateDir = false
				break
			}
		}
	}
	if dir == "" && !lateDir {
		// Every task gets a fresh working dir, never the executor's own. One
		// that may be kept is made outside the executor's work dir, which
		// goes when the executor does.
		var d string
		var td *taskDir
		if t.KeepTemp {
			d, err = os.MkdirTemp(os.TempDir(), "task-*")
		} else if td, err = s.dirs.get(); err == nil {
			d = td.path
		}
		if err != nil {
			fail(fmt.Sprintf("make working dir: %v", err), false)
			return
		}
		if t.KeepTemp {
			// Kept when the task fails: said in its log, so that the user
			// finds it; removed when it succeeds.
			final := emit
			failedTask := false
			emit = func(ev *wizrpc.ExecuteEvent) {
				if f := ev.GetFinished(); f != nil && f.Outcome != wizrpc.Outcome_OUTCOME_SUCCEEDED {
					failedTask = true
					final(&wizrpc.ExecuteEvent{Event: &wizrpc.ExecuteEvent_Log{Log: &wizrpc.Log{
						Stream: "stderr", Data: []byte("wiz: kept the working directory " + d + " (--keep-temp)\n")}}})
				}
				final(ev)
			}
			defer func() {
				if !failedTask {
					os.RemoveAll(d)
				}
			}()
		} else {
			releaseDir = func() { s.dirs.put(td) }
		}
		dir = d
	} else if dir != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			why := "does not exist"
			if err == nil {
				why = "is not a directory"
			} else if !errors.Is(err, fs.ErrNotExist) {
				why = "cannot be used: " + err.Error()
			}
			fail(fmt.Sprintf("working directory %s (with.dir) %s on the executor's host: create it first, or leave dir out for a fresh temporary directory", dir, why), false)
			return
		}
	}
	env := cp.env
	if len(t.Env) > 0 {
		// The pipeline's env goes under the plan's (with.env wins).
		env, err = layerEnv(p, t.Env)
		if err != nil {
			fail(fmt.Sprintf("%s: %v", t.Type, err), false)
			return
		}
	}
	var stdin *inputReader
	var paths map[string]string // input name → path, for ${{ files.NAME }}
	for name, d := range t.Inputs {
		if name == p.StdinInput {
			r, err := s.open(d)
			if err != nil {
				fail(fmt.Sprintf("input %s: %v", name, err), false)
				return
			}
			defer r.Close()
			stdin = &inputReader{r: r}
			if !refs[name] {
				continue
			}
		}
		path, err := s.place(dir, name, d)
		if err != nil {
			fail(fmt.Sprintf("input %s: %v", name, err), false)
			return
		}
		if paths == nil {
			paths = map[string]string{}
		}
		paths[name] = path
		env = append(env[:len(env):len(env)], "WIZ_INPUT_"+envName(name)+"="+path)
	}
	argv := p.Argv
	if len(refs) > 0 {
		argv = make([]string, len(p.Argv))
		for i, a := range p.Argv {
			argv[i] = substituteFiles(a, paths)
		}
		env = append([]string(nil), env...)
		for i, kv := range env {
			if strings.Contains(kv, "${{") {
				env[i] = substituteFiles(kv, paths)
			}
		}
	}
	if len(t.FileEnv) > 0 || len(t.ExprEnv) > 0 {
		env = append([]string(nil), env...)
		for _, v := range slices.Sorted(maps.Keys(t.FileEnv)) {
			env = append(env, v+"="+paths[t.FileEnv[v]])
		}
		for _, v := range slices.Sorted(maps.Keys(t.ExprEnv)) {
			val := t.ExprEnv[v]
			if strings.IndexByte(val, 0) >= 0 {
				fail(fmt.Sprintf("the value of %s holds a NUL byte, which no environment variable can carry; pass it as an input instead", v), false)
				return
			}
			env = append(env, v+"="+val)
		}
	}

	// stdout and stderr are pipes this function reads itself (see child.go),
	// and stdin, when the program reads an input, a pipe a goroutine writes:
	// waiting for the program never waits for a child it left behind holding
	// one of them: the program's exit ends the task, then its process group is
	// killed, then the copies finish.
	// WIZ_RUN_ID marks the task's processes, so that a Manager cleaning up
	// after a dead executor kills only processes of that run.
	if len(t.Inputs) > 0 || len(t.ExprEnv) > 0 {
		env = dedupEnv(env) // a WIZ_INPUT_ the plan sets yields to the input's
	}
	if env, err = withSecrets(env, t.Secrets); err != nil {
		fail(err.Error(), false)
		return
	}
	env = append(env[:len(env):len(env)], "WIZ_RUN_ID="+t.RunId)
	// Started is sent only when the program is still running after
	// startedDelay, or logs before: a short task costs one message, its
	// Finished.
	ls := &lazyStart{emit: emit}
	lim := newLogLimit(t.MaxLogBytes, func(ev *wizrpc.ExecuteEvent) { ls.send(); emit(ev) })
	logEmit := lim.emit
	var stdout *blob.Spill
	var outw io.Writer
	if p.StdoutOutput {
		stdout = s.blobs.NewSpill(t.InlineMaxBytes, t.MaxOutputBytes)
		outw = stdout
	} else {
		outw = &logWriter{stream: "stdout", emit: logEmit}
	}
	var maskOut io.WriteCloser // stdout through the mask; closed when copied
	if mask != nil {
		maskOut = mask.Writer(outw)
		outw = maskOut
	}
	se := &stderrScanner{emit: logEmit, mask: mask}
	var pipes [2]*outPipe // stdout, stderr: the executor's ends
	childFds := [3]int{int(s.devNull.Fd()), -1, -1}
	var stdinR, stdinW *os.File // the child's end, ours
	closeAll := func() {
		for i, o := range pipes {
			if o != nil {
				o.close()
			}
			if childFds[i+1] >= 0 {
				syscall.Close(childFds[i+1])
			}
		}
		for _, f := range []*os.File{stdinR, stdinW} {
			if f != nil {
				f.Close()
			}
		}
	}
	abort := func(msg string) {
		closeAll()
		if stdout != nil {
			stdout.Abort()
		}
		fail(msg, false)
	}
	if stdin != nil {
		r, w, err := stdinPipe()
		if err != nil {
			abort(fmt.Sprintf("pipe: %v", err))
			return
		}
		stdinR, stdinW = r, w
		childFds[0] = int(r.Fd())
	}
	for i := range pipes {
		o, w, err := newOutPipe()
		if err != nil {
			abort(fmt.Sprintf("pipe: %v", err))
			return
		}
		pipes[i], childFds[i+1] = o, w
	}
	// Everything above is done before the task has a slot, while other
	// programs run; the slot is held only while this one does.
	ctx, releaseSlot, stopTimeout, ok := s.takeSlot(ctx, t)
	if !ok {
		closeAll()
		if stdout != nil {
			stdout.Abort()
		}
		emit(finished(wizrpc.Outcome_OUTCOME_CANCELLED, 0, cause(ctx), false))
		return
	}
	defer stopTimeout()
	defer releaseSlot()
	if lateDir {
		td, err := s.dirs.get()
		if err != nil {
			abort(fmt.Sprintf("make working dir: %v", err))
			return
		}
		releaseDir = func() { s.dirs.put(td) }
		dir = td.path
	}
	if len(t.SecretFiles) > 0 {
		removeSecrets, err := writeSecretFiles(dir, t.SecretFiles, t.Secrets)
		defer removeSecrets()
		if err != nil {
			abort(err.Error())
			return
		}
		removeSecretFiles = removeSecrets
	}
	start := time.Now()
	pid, err := syscall.ForkExec(cp.path, argv, &syscall.ProcAttr{
		Dir: dir, Env: env,
		Files: []uintptr{uintptr(childFds[0]), uintptr(childFds[1]), uintptr(childFds[2])},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
	})
	if err != nil {
		abort(fmt.Sprintf("start %s: %v", p.Argv[0], &os.PathError{Op: "fork/exec", Path: cp.path, Err: err}))
		return
	}
	// The child has its own copies; keep only our ends.
	for i := 1; i < 3; i++ {
		syscall.Close(childFds[i])
		childFds[i] = -1
	}
	if stdinR != nil {
		stdinR.Close()
	}
	// The task's process group is recorded (recordGroup) once it has run
	// for startedDelay, with its output streaming: a program that ends
	// sooner has its group killed by this function within microseconds, and
	// two journal writes per task were 4% of the executor's CPU on short
	// tasks. An executor killed within a task's first startedDelay leaves
	// that group unrecorded; the program itself dies with the executor
	// (parent-death signal), what it started in its group is not killed.
	unrecord := func() {}
	defer func() { unrecord() }()
	copied := make(chan struct{}, 3)
	copies := 0 // goroutines that send on copied
	copyOut := func() {
		f := pipes[0].file()
		s.workers.do(func() {
			buf := copyBufs.Get().(*[]byte)
			// Hiding the file's WriteTo makes CopyBuffer use buf: os.File's
			// WriteTo allocates 32 KiB per copy when it cannot splice.
			_, err := io.CopyBuffer(outw, struct{ io.Reader }{f}, *buf)
			copyBufs.Put(buf)
			if err != nil && stdout != nil {
				// The output went over its limit or could not be stored: stop
				// the program rather than let it block on a full pipe.
				_ = syscall.Kill(-pid, syscall.SIGKILL)
			}
			copied <- struct{}{}
		})
	}
	copyErr := func() {
		f := pipes[1].file()
		s.workers.do(func() { se.scan(f); copied <- struct{}{} })
	}
	rss := &rssSampler{pid: pid}
	st := &streamer{begin: func() {
		rss.start()
		unrecord = s.recordGroup(t.RunId, pid)
		copyOut()
		copyErr()
		copies += 2
	}}
	ls.start(int32(pid), func() { st.start() })
	stdinCopy := 0 // 1: a goroutine writes stdin and sends on copied
	if stdin != nil {
		stdinCopy = 1
		s.workers.do(func() {
			buf := copyBufs.Get().(*[]byte)
			_, _ = io.CopyBuffer(struct{ io.Writer }{stdinW}, stdin, *buf) // as above, for ReadFrom
			copyBufs.Put(buf)
			stdinW.Close()
			if stdin.err != nil {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
			}
			copied <- struct{}{}
		})
	}

	// Cancelled or timed out: SIGTERM to the group, SIGKILL after KillGrace.
	// The wait itself stays in this goroutine.
	exited := make(chan struct{})
	stopKill := context.AfterFunc(ctx, func() { // ends when the program has
		_ = syscall.Kill(-pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(KillGrace):
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	})
	awaitExit(pid)
	sampled := rss.stop() // exited, not reaped: its pid is still its own
	ws, ru, werr := reap(pid)
	removeSecretFiles() // before any output is collected
	close(exited)
	stopKill()
	// Nothing the program started outlives the task.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	wall := time.Since(start)
	releaseSlot()
	if !st.end() {
		// It ended before its output was streamed: read what it left. A pipe
		// something outside its group still holds is copied as it comes, as
		// when streaming, with the same bound on the wait. Its logs are sent
		// without a Started first: the Manager dates the start from the
		// Finished's run time, where a Started sent now would date it after
		// the end.
		ls.finish()
		buf := copyBufs.Get().(*[]byte)
		_, err := io.CopyBuffer(outw, struct{ io.Reader }{pipes[0]}, *buf)
		copyBufs.Put(buf)
		switch {
		case errors.Is(err, errWouldBlock):
			copyOut()
			copies++
		case err != nil && stdout != nil:
			// Over its limit or not stored: stdout.Err says so below.
		}
		se.scan(pipes[1])
		if se.err == errWouldBlock {
			copyErr()
			copies++
		}
	}
	for i := 0; i < copies+stdinCopy; i++ {
		select {
		case <-copied:
		case <-time.After(KillGrace):
			// Something outside the process group still holds a pipe: stop
			// copying rather than wait for it.
			for _, o := range pipes {
				o.close()
			}
			if stdinW != nil {
				stdinW.Close()
			}
			<-copied
		}
	}
	for _, o := range pipes {
		o.close()
	}
	if maskOut != nil {
		_ = maskOut.Close() // what it held back; an error shows in stdout.Err
	}
	se.flush()
	lim.finish()

	m := &wizpb.Metrics{WallNs: wall.Nanoseconds(), InputBytes: dataSize(t.Inputs)}
	code := int32(-1)
	if werr == nil {
		m.UserCpuNs = ru.Utime.Nano()
		m.SysCpuNs = ru.Stime.Nano()
		m.MaxRssBytes = ru.Maxrss * 1024
		// The child's count starts from this process's pages at exec: not
		// above this process's own peak (read after the child ended, so at
		// least its value then), it says nothing of the program's.
		var self syscall.Rusage
		if syscall.Getrusage(syscall.RUSAGE_SELF, &self) == nil && ru.Maxrss <= self.Maxrss {
			m.MaxRssUpperBound = true
			if sampled > 0 {
				// Read while it ran: its own pages, a lower bound of its peak.
				m.MaxRssBytes, m.MaxRssUpperBound, m.MaxRssSampled = sampled, false, true
			}
		}
		code = int32(ws.ExitStatus())
	}
	ls.finish()
	committed := false // stdout was committed (or failed to be) and needs no Abort
	// end sends the task's one Finished, with its metrics and outputs.
	end := func(o wizrpc.Outcome, code int32, msg string, outs []*wizrpc.Output) {
		if o != wizrpc.Outcome_OUTCOME_SUCCEEDED && stdout != nil && !committed {
			stdout.Abort()
		}
		ev := finished(o, code, msg, true)
		ev.GetFinished().Metrics = m
		ev.GetFinished().Outputs = outs
		ev.GetFinished().ProgramSha256 = program
		if releaseDir != nil {
			releaseDir()
			releaseDir = nil
		}
		emit(ev)
	}
	// A bad input (a blob changed on disk) or an output that could not be
	// kept fails the task whatever the program did with it.
	var dataErr string
	if stdin != nil && stdin.err != nil {
		dataErr = fmt.Sprintf("input %s: %v", p.StdinInput, stdin.err)
	} else if stdout != nil {
		if err := stdout.Err(); err != nil {
			dataErr = fmt.Sprintf("output out (stdout of %s): %v", filepath.Base(p.Argv[0]), err)
		}
	}
	if dataErr != "" && ctx.Err() == nil {
		end(wizrpc.Outcome_OUTCOME_FAILED, code, dataErr, nil)
		return
	}
	if ctx.Err() != nil {
		end(outcomeOf(ctx), code, cause(ctx), nil)
		return
	}
	if werr != nil || !ws.Exited() || code != 0 {
		msg := fmt.Sprintf("%s exited with code %d", filepath.Base(p.Argv[0]), code)
		if werr != nil {
			msg = fmt.Sprintf("%s: wait: %v", filepath.Base(p.Argv[0]), werr)
		} else if code < 0 {
			msg = fmt.Sprintf("%s: %s", filepath.Base(p.Argv[0]), statusText(ws))
		}
		if tail := strings.TrimSpace(se.tail()); tail != "" {
			msg += ": " + tail
		}
		end(wizrpc.Outcome_OUTCOME_FAILED, code, msg, nil)
		return
	}
	var outs []*wizrpc.Output
	if stdout != nil {
		inline, digest, size, err := stdout.Commit()
		committed = true
		if err != nil {
			end(wizrpc.Outcome_OUTCOME_FAILED, 0, fmt.Sprintf("output out (stdout of %s): %v", filepath.Base(p.Argv[0]), err), nil)
			return
		}
		d := &wizpb.Data{Inline: inline, ContentType: "text/plain"}
		if digest != "" {
			d = &wizpb.Data{ContentType: "application/octet-stream", Files: []*wizpb.FileRef{{Digest: digest, Size: size, Name: "stdout"}}}
		}
		m.OutputBytes += size
		outs = append(outs, &wizrpc.Output{Name: "out", Data: d})
	}
	for _, o := range p.Outputs {
		if mask != nil {
			if err := maskFiles(mask, dir, o.Path); err != nil {
				end(wizrpc.Outcome_OUTCOME_FAILED, 0, fmt.Sprintf("output %s: mask secrets: %v", o.Name, err), nil)
				return
			}
		}
		d, err := s.collect(dir, o.Path, t.MaxOutputBytes)
		if err != nil {
			end(wizrpc.Outcome_OUTCOME_FAILED, 0, fmt.Sprintf("output %s: %v", o.Name, err), nil)
			return
		}
		m.OutputBytes += dataSize(map[string]*wizpb.Data{"": d})
		outs = append(outs, &wizrpc.Output{Name: o.Name, Data: d})
	}
	end(wizrpc.Outcome_OUTCOME_SUCCEEDED, 0, "", outs)
}

// awaitExit parks the calling goroutine until process pid has exited,
// through Go's poller on a pidfd, so that the Wait after it returns at once.
// Waiting in Wait itself blocks a thread in waitid, which the runtime must
// replace while it waits. Where pidfds are not available it returns at once
// and Wait waits as usual.
func awaitExit(pid int) {
	fd, _, errno := syscall.Syscall(sysPidfdOpen, uintptr(pid), pidfdNonblock, 0)
	if errno != 0 {
		return
	}
	f := os.NewFile(fd, "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(func(fd uintptr) bool {
		var info [128]byte // siginfo_t
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPidfd, fd, uintptr(unsafe.Pointer(&info[0])), syscall.WEXITED|syscall.WNOHANG|wNowait, 0, 0)
		if errno != 0 {
			return true // let Wait report it
		}
		return binary.NativeEndian.Uint32(info[16:20]) != 0 // si_pid (after signo, errno, code and padding): 0 while it runs
	})
}

const (
	sysPidfdOpen  = 434        // pidfd_open(2)
	pidfdNonblock = 0x800      // PIDFD_NONBLOCK (O_NONBLOCK)
	pPidfd        = 3          // P_PIDFD for waitid(2)
	wNowait       = 0x01000000 // WNOWAIT: leave the child to be reaped by Wait
)

// stdinPipe makes the pipe of a program's stdin: the read end is the
// child's, a plain blocking file never registered with Go's poller; the
// write end is the executor's, non-blocking and polled. (stdout and stderr:
// newOutPipe.)
func stdinPipe() (r, w *os.File, err error) {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		return nil, nil, err
	}
	if err := syscall.SetNonblock(p[1], true); err != nil {
		syscall.Close(p[0])
		syscall.Close(p[1])
		return nil, nil, err
	}
	return os.NewFile(uintptr(p[0]), "|0"), os.NewFile(uintptr(p[1]), "|1"), nil
}

// startedDelay is how long a native task runs before its executor sends
// Started: a task that ends sooner is reported by its Finished alone.
// (A variable for tests.)
var startedDelay = 5 * time.Millisecond

// lazyStart sends a native task's Started event when the task has run for
// startedDelay, or logs, whichever comes first, and never after its end.
type lazyStart struct {
	emit  func(*wizrpc.ExecuteEvent)
	mu    sync.Mutex
	pid   int32
	sent  bool
	ended bool
	timer *time.Timer
}

// start arms the timer for the program pid; when it fires, before Started
// is sent, it calls also.
func (l *lazyStart) start(pid int32, also func()) {
	l.mu.Lock()
	l.pid = pid
	l.mu.Unlock()
	l.timer = time.AfterFunc(startedDelay, func() { also(); l.send() })
}

// send sends Started unless it was sent or the task ended.
func (l *lazyStart) send() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sent || l.ended {
		return
	}
	l.sent = true
	l.emit(&wizrpc.ExecuteEvent{Event: &wizrpc.ExecuteEvent_Started{Started: &wizrpc.Started{Pid: l.pid}}})
}

// finish stops the timer: from now on Started is never sent.
func (l *lazyStart) finish() {
	if l.timer != nil {
		l.timer.Stop()
	}
	l.mu.Lock()
	l.ended = true
	l.mu.Unlock()
}

func onlyStdin(in map[string]*wizpb.Data, stdin string) bool {
	for n := range in {
		if n != stdin {
			return false
		}
	}
	return true
}

func envName(name string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, name)
}

// open returns a reader of a Wiz Data value: inline bytes or its files.
func (s *Server) open(d *wizpb.Data) (io.ReadCloser, error) {
	if len(d.GetFiles()) == 0 {
		return io.NopCloser(bytes.NewReader(d.GetInline())), nil
	}
	var rs []io.Reader
	var cs []io.Closer
	for _, f := range d.Files {
		r, err := s.blobs.Open(f.Digest)
		if err != nil {
			for _, c := range cs {
				c.Close()
			}
			return nil, err
		}
		rs = append(rs, r)
		cs = append(cs, r)
	}
	return &multiCloser{Reader: io.MultiReader(rs...), cs: cs}, nil
}

type multiCloser struct {
	io.Reader
	cs []io.Closer
}

func (m *multiCloser) Close() error {
	for _, c := range m.cs {
		c.Close()
	}
	return nil
}

// place writes an input into the working dir: a file named after the input,
// or a directory of its files, and returns its path.
func (s *Server) place(dir, name string, d *wizpb.Data) (string, error) {
	if len(d.GetFiles()) <= 1 && !d.GetDirectory() {
		path := filepath.Join(dir, name)
		r, err := s.open(d)
		if err != nil {
			return "", err
		}
		defer r.Close()
		return path, writeFile(path, r)
	}
	root := filepath.Join(dir, name)
	if err := os.MkdirAll(root, 0o755); err != nil { // an empty directory too
		return "", err
	}
	for _, f := range d.Files {
		rel := filepath.Clean(filepath.FromSlash(f.Name))
		if rel == "." || strings.HasPrefix(rel, "..") || filepath.IsAbs(rel) {
			return "", fmt.Errorf("file name %q leaves the input's directory", f.Name)
		}
		r, err := s.blobs.Open(f.Digest)
		if err != nil {
			return "", err
		}
		err = writeFile(filepath.Join(root, rel), r)
		r.Close()
		if err != nil {
			return "", err
		}
	}
	return root, nil
}

func writeFile(path string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// collect stores a declared output as Wiz Files: one file, every file of a
// directory (named by their slash paths inside it), or every file a glob
// matches (named by their paths relative to the working dir). An output
// larger than max bytes (0: no limit) is refused before anything is stored.
func (s *Server) collect(dir, rel string, max int64) (*wizpb.Data, error) {
	type file struct{ path, name string }
	var files []file
	isDir := strings.ContainsAny(rel, "*?[") // a glob's files are a directory
	add := func(path, name string) error {
		st, err := os.Stat(path)
		if err != nil {
			return err
		}
		if !st.IsDir() {
			files = append(files, file{path, name})
			return nil
		}
		return filepath.WalkDir(path, func(p string, e fs.DirEntry, err error) error {
			if err != nil || !e.Type().IsRegular() {
				return err
			}
			r, _ := filepath.Rel(path, p)
			if name != "" {
				r = filepath.Join(name, r)
			}
			files = append(files, file{p, filepath.ToSlash(r)})
			return nil
		})
	}
	abs := func(r string) string {
		if filepath.IsAbs(r) {
			return r
		}
		return filepath.Join(dir, r)
	}
	if strings.ContainsAny(rel, "*?[") {
		matches, err := filepath.Glob(abs(rel))
		if err != nil {
			return nil, fmt.Errorf("declared output glob %q: %w", rel, err)
		}
		if len(matches) == 0 {
			return nil, fmt.Errorf("declared output glob %q matched no file the program wrote", rel)
		}
		for _, m := range matches {
			name, err := filepath.Rel(dir, m)
			if err != nil || strings.HasPrefix(name, "..") {
				name = filepath.Base(m)
			}
			if err := add(m, name); err != nil {
				return nil, fmt.Errorf("declared output %s: %w", m, err)
			}
		}
	} else {
		path := abs(rel)
		st, err := os.Stat(path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("declared output file %s was not written by the program", rel)
			}
			return nil, err
		}
		name := ""
		if !st.IsDir() {
			name = filepath.Base(path)
		}
		isDir = st.IsDir()
		if err := add(path, name); err != nil {
			return nil, fmt.Errorf("declared output %s: %w", rel, err)
		}
	}
	var total int64
	sizes := make([]int64, len(files))
	for i, f := range files {
		st, err := os.Stat(f.path)
		if err != nil {
			return nil, err
		}
		sizes[i] = st.Size()
		total += st.Size()
	}
	if max > 0 && total > max {
		return nil, fmt.Errorf("%s is %s, %w: max_output_size is %s", rel, blob.Size(total), blob.ErrTooLarge, blob.Size(max))
	}
	d := &wizpb.Data{ContentType: "application/octet-stream", Directory: isDir}
	for _, f := range files {
		digest, size, err := s.blobs.PutFile(f.path)
		if err != nil {
			return nil, fmt.Errorf("store %s: %w", f.name, err)
		}
		d.Files = append(d.Files, &wizpb.FileRef{Digest: digest, Size: size, Name: f.name})
	}
	return d, nil
}

// layerEnv builds a native task's environment with the pipeline's env (base)
// under the plan's own: the executor's (when the plan inherits it), then
// base, then the plan's Env.
func layerEnv(p *wizrpc.Plan, base map[string]string) ([]string, error) {
	var env []string
	if p.InheritEnv {
		env = os.Environ()
	}
	for _, k := range slices.Sorted(maps.Keys(base)) {
		env = append(env, k+"="+base[k])
	}
	for _, k := range slices.Sorted(maps.Keys(p.Env)) {
		env = append(env, k+"="+p.Env[k])
	}
	return planEnv(env)
}

// fileRefs returns the inputs a plan's argv and env name with
// "${{ files.NAME }}"; a name that is not an input is an error.
func fileRefs(p *wizrpc.Plan, inputs map[string]*wizpb.Data) (map[string]bool, error) {
	var refs map[string]bool // nil when none, as for most tasks
	check := func(s string) error {
		if !strings.Contains(s, "${{") { // the hot path: no regexp per task
			return nil
		}
		for _, m := range filesRefRE.FindAllStringSubmatch(s, -1) {
			if _, ok := inputs[m[1]]; !ok {
				names := make([]string, 0, len(inputs))
				for n := range inputs {
					names = append(names, n)
				}
				sort.Strings(names)
				valid := strings.Join(names, ", ")
				if valid == "" {
					valid = "none; add inputs: {" + m[1] + ": PROCESSOR}"
				}
				return fmt.Errorf("%s refers to input %q, which the processor does not have (its inputs: %s)", m[0], m[1], valid)
			}
			if refs == nil {
				refs = map[string]bool{}
			}
			refs[m[1]] = true
		}
		return nil
	}
	for _, a := range p.Argv {
		if err := check(a); err != nil {
			return nil, err
		}
	}
	for _, v := range p.Env {
		if err := check(v); err != nil {
			return nil, err
		}
	}
	return refs, nil
}

func substituteFiles(s string, paths map[string]string) string {
	return filesRefRE.ReplaceAllStringFunc(s, func(ref string) string {
		return paths[filesRefRE.FindStringSubmatch(ref)[1]]
	})
}

// inputReader remembers the first error reading an input (a blob that
// fails its digest check), which a program's early exit would hide.
type inputReader struct {
	r   io.Reader
	err error
}

func (ir *inputReader) Read(p []byte) (int, error) {
	n, err := ir.r.Read(p)
	if err != nil && err != io.EOF && ir.err == nil {
		ir.err = err
	}
	return n, err
}

// recordGroup notes a task's process group in the run's task journal,
// TaskDir/<run>/<executor pid>.journal ("+PGID" when it starts), so that if
// this executor is killed before it kills the group itself, the Manager can;
// the returned func notes its end ("-PGID"). One append per event and no
// file per task: creating and removing a file for each task cost more than
// the rest of the bookkeeping together.
func (s *Server) recordGroup(runID string, pgid int) func() {
	j := s.journal(runID)
	if j == nil {
		return func() {}
	}
	_, _ = j.Write([]byte("+" + strconv.Itoa(pgid) + "\n"))
	return func() { _, _ = j.Write([]byte("-" + strconv.Itoa(pgid) + "\n")) }
}

// journal returns the run's task journal, opened (O_APPEND) on first use and
// kept open until the executor stops; nil when tasks are not recorded.
func (s *Server) journal(runID string) *os.File {
	if s.cfg.TaskDir == "" || runID == "" || strings.ContainsAny(runID, "/.") {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if j, ok := s.journals[runID]; ok {
		return j
	}
	dir := filepath.Join(s.cfg.TaskDir, runID)
	var j *os.File
	if err := os.MkdirAll(dir, 0o755); err == nil {
		j, _ = os.OpenFile(filepath.Join(dir, strconv.Itoa(os.Getpid())+".journal"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	}
	if s.journals == nil {
		s.journals = map[string]*os.File{}
	}
	s.journals[runID] = j // nil too: do not retry per task
	return j
}

func (s *Server) closeJournals() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, j := range s.journals {
		if j != nil {
			j.Close()
		}
		delete(s.journals, id)
	}
}

// copyBufs holds buffers for copying programs' output, so that a task of a
// thousand /bin/true tasks does not allocate a fresh 32 KiB buffer each.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// logWriter forwards output as log events.
type logWriter struct {
	stream string
	emit   func(*wizrpc.ExecuteEvent)
}

func (l *logWriter) Write(p []byte) (int, error) {
	b := append([]byte(nil), p...)
	l.emit(&wizrpc.ExecuteEvent{Event: &wizrpc.ExecuteEvent_Log{Log: &wizrpc.Log{Stream: l.stream, Data: b}}})
	return len(p), nil
}

// stderrScanner forwards stderr as log events, turns "::warning::TEXT" lines
// into warnings and keeps the tail for failure messages.
type stderrScanner struct {
	emit func(*wizrpc.ExecuteEvent)
	last []byte
	err  error // why the last scan stopped; io.EOF at the end of the output
	// mask, when set, masks secrets line by line: a line cut short by a
	// scan that would block waits in partial for its end.
	mask    *secrets.Masker
	partial []byte
}

// stderrReaders are the scanners' line readers, reused across tasks.
var stderrReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}

func (s *stderrScanner) scan(r io.Reader) {
	br := stderrReaders.Get().(*bufio.Reader)
	br.Reset(r)
	defer func() { br.Reset(nil); stderrReaders.Put(br) }()
	// Lines already read go out together, up to maxLogLine per event: a
	// program that writes many short lines costs a few events, not one per
	// line. Nothing waits to fill a batch.
	var batch []byte
	send := func() {
		if len(batch) > 0 {
			s.emit(&wizrpc.ExecuteEvent{Event: &wizrpc.ExecuteEvent_Log{Log: &wizrpc.Log{Stream: "stderr", Data: batch}}})
			batch = nil
		}
	}
	for {
		var line []byte
		var err error
		if s.mask == nil && len(batch)+br.Buffered() < maxLogLine {
			// Straight into the batch: no copy of each line of its own.
			start := len(batch)
			batch, err = appendLine(batch, br, maxLogLine-start)
			line = batch[start:]
			batch = batch[:start]
		} else {
			line, err = readLine(br, maxLogLine)
		}
		if s.mask != nil {
			if len(s.partial) > 0 {
				line = append(s.partial, line...)
				s.partial = nil
			}
			if err != nil && err != io.EOF && len(line) > 0 && line[len(line)-1] != '\n' {
				s.partial, line = line, nil
			}
			line = s.mask.Bytes(line)
		}
		if len(line) > 0 {
			if msg, ok := bytes.CutPrefix(bytes.TrimRight(line, "\r\n"), []byte("::warning::")); ok {
				send()
				s.emit(&wizrpc.ExecuteEvent{Event: &wizrpc.ExecuteEvent_Warning{Warning: &wizrpc.Warning{Message: string(msg)}}})
			} else {
				if len(batch)+len(line) > maxLogLine {
					send()
				}
				batch = append(batch, line...)
				s.last = append(s.last, line...)
				if len(s.last) > 2*stderrTail {
					s.last = append([]byte(nil), s.last[len(s.last)-stderrTail:]...)
				}
			}
		}
		if err != nil || br.Buffered() == 0 {
			send() // before a read that may wait
		}
		if err != nil {
			s.err = err
			return
		}
	}
}

// maxLogLine is the longest piece of a stderr line sent as one log event:
// a longer line goes in pieces, so that no line is held in memory whole.
const maxLogLine = 64 << 10

// readLine reads a line (with its newline) of at most max bytes; a longer
// line comes in pieces, each returned with a nil error.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var out []byte
	for {
		frag, err := br.ReadSlice('\n')
		out = append(out, frag...)
		if err != bufio.ErrBufferFull {
			return out, err
		}
		if len(out) >= max {
			return out, nil
		}
	}
}

// appendLine is readLine appending to dst.
func appendLine(dst []byte, br *bufio.Reader, max int) ([]byte, error) {
	n := len(dst)
	for {
		frag, err := br.ReadSlice('\n')
		dst = append(dst, frag...)
		if err != bufio.ErrBufferFull {
			return dst, err
		}
		if len(dst)-n >= max {
			return dst, nil
		}
	}
}

// flush sends a line a scan held back (masking).
func (s *stderrScanner) flush() {
	if len(s.partial) > 0 {
		line := s.mask.Bytes(s.partial)
		s.partial = nil
		s.emit(&wizrpc.ExecuteEvent{Event: &wizrpc.ExecuteEvent_Log{Log: &wizrpc.Log{Stream: "stderr", Data: line}}})
		s.last = append(s.last, line...)
	}
}

func (s *stderrScanner) tail() string {
	if len(s.last) > stderrTail {
		return string(s.last[len(s.last)-stderrTail:])
	}
	return string(s.last)
}

func durationNs(ns int64) time.Duration { return time.Duration(ns) }
