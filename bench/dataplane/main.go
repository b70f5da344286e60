// Command dataplane measures wiz's data plane: the throughput in MB/s of a
// large file through a chain of N std/exec `cat` processors, next to plain
// `cat | cat | …` piping of the same file on the same machine, printed as a
// ratio. Run it with `make bench-data` (BENCHFLAGS=--quick for 256 MiB and
// one repetition); see docs/performance.md.
//
// It is a benchmark, not a test: it reports, and exits non-zero only when it
// cannot run at all (no wiz binary, a run that fails).
package main

import (
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

func main() {
	os.Exit(run())
}

func run() int {
	var (
		quick bool
		size  int64
		chain int
		reps  int
		wiz   string
		keep  bool
	)
	flag.BoolVar(&quick, "quick", false, "256 MiB and one repetition")
	flag.Int64Var(&size, "size", 1<<30, "bytes in the file (default 1 GiB)")
	flag.IntVar(&chain, "chain", 3, "cat processors in the chain")
	flag.IntVar(&reps, "reps", 3, "measured repetitions of each (the median is reported)")
	flag.StringVar(&wiz, "wiz", "", "the wiz binary (default bin/wiz in the repository root)")
	flag.BoolVar(&keep, "keep", false, "keep the temporary directory")
	flag.Parse()
	if quick {
		size, reps = 256<<20, 1
	}
	if wiz == "" {
		wiz = filepath.Join("bin", "wiz")
	}
	wiz, err := filepath.Abs(wiz)
	if err != nil {
		fmt.Fprintf(os.Stderr, "dataplane: %v\n", err)
		return 1
	}
	if _, err := os.Stat(wiz); err != nil {
		fmt.Fprintf(os.Stderr, "dataplane: no wiz binary at %s; run `make build` first or pass --wiz\n", wiz)
		return 1
	}
	if chain < 1 || reps < 1 || size < 1 {
		fmt.Fprintln(os.Stderr, "dataplane: --chain, --reps and --size must be 1 or more")
		return 2
	}
	dir, err := os.MkdirTemp("", "wiz-bench-data-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "dataplane: %v\n", err)
		return 1
	}
	if keep {
		fmt.Printf("keeping %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if err := measure(dir, wiz, size, chain, reps); err != nil {
		fmt.Fprintf(os.Stderr, "dataplane: %v\n", err)
		return 1
	}
	return 0
}

func measure(dir, wiz string, size int64, chain, reps int) error {
	data := filepath.Join(dir, "data.bin")
	if err := writeData(data, size); err != nil {
		return err
	}
	var procs strings.Builder
	prev := "inputs.data"
	for i := 1; i <= chain; i++ {
		fmt.Fprintf(&procs, "  c%d: {uses: std/exec, with: {command: [cat]}, inputs: {stdin: %s}}\n", i, prev)
		prev = fmt.Sprintf("c%d", i)
	}
	pipeline := filepath.Join(dir, "chain.yaml")
	if err := os.WriteFile(pipeline, []byte("name: chain\ninputs:\n  data: {type: file}\nprocessors:\n"+procs.String()), 0o644); err != nil {
		return err
	}
	pipe := "cat " + data + strings.Repeat(" | cat", chain-1) + " > " + filepath.Join(dir, "out.bin")

	var wizTimes, pipeTimes []time.Duration
	for r := 0; r < reps; r++ {
		// A fresh home per repetition: the input is stored as a blob and
		// every stage's output written and hashed, as in a first run.
		home := filepath.Join(dir, fmt.Sprintf("home%d", r))
		cmd := exec.Command(wiz, "run", pipeline, "-q", "-i", "data=@"+data)
		cmd.Env = append(os.Environ(), "WIZ_HOME="+home)
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("wiz run: %v\n%s", err, out)
		}
		wizTimes = append(wizTimes, time.Since(start))
		if err := os.RemoveAll(home); err != nil {
			return err
		}

		start = time.Now()
		if out, err := exec.Command("sh", "-c", pipe).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v\n%s", pipe, err, out)
		}
		pipeTimes = append(pipeTimes, time.Since(start))
	}
	w, p := median(wizTimes), median(pipeTimes)
	mb := float64(size) / 1e6
	fmt.Printf("data plane: %.0f MB through %d cat processors, median of %d\n", mb, chain, reps)
	fmt.Printf("  wiz run (%d × std/exec cat)   %8.1f MB/s  %s\n", chain, mb/w.Seconds(), w.Round(time.Millisecond))
	fmt.Printf("  sh: cat%s   %8.1f MB/s  %s\n", strings.Repeat(" | cat", chain-1), mb/p.Seconds(), p.Round(time.Millisecond))
	fmt.Printf("  ratio wiz/pipe throughput: %.2f (pipe is %.1f× faster)\n", p.Seconds()/w.Seconds(), w.Seconds()/p.Seconds())
	return nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// writeData writes size pseudo-random bytes to path.
func writeData(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	block := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i+8 <= len(block); i += 8 {
		binary.LittleEndian.PutUint64(block[i:], r.Uint64())
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for n := int64(0); n < size; {
		binary.LittleEndian.PutUint64(block, uint64(n))
		k := min(int64(len(block)), size-n)
		if _, err := w.Write(block[:k]); err != nil {
			f.Close()
			return err
		}
		n += k
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
