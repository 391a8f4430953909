package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/whp-dev/whp/internal/rusage"
)

// The platform and the baseline each run in a process of their own
// (Config.Command), apart from the load generator and the receiver: the
// CPU and the memory measured are then the platform's alone, as the
// peers' figures were theirs without their load client — where the three
// shared a process, the receiver's and the load generator's work was
// counted as the platform's (a sixth of the CPU seconds), and their
// connections, buffers and arrival records (≈ 3 MB of the live heap at
// fan-out 16). The baseline runs the same way, so the ratios compare two
// servers that each cross a process boundary from the same client.
//
// The bench talks to a process over its standard input and output, one
// JSON value a line: it sends a processSpec, the process answers a
// processReply with its URL; then each processRequest gets a
// processReply. Closing the process's standard input stops it.

// processSpec is what a process serves.
type processSpec struct {
	// Baseline: the bare handler answering 202; else the platform.
	Baseline bool `json:"baseline,omitempty"`
	// Relay: the bare relay (relay.go) to ReceiverURL's partners, for
	// Fanout and Tenants, trusting PartnerCA; else the platform.
	Relay bool `json:"relay,omitempty"`
	// RelayKafka, with Relay: the Kafka relay (kafkarelay.go), the relay
	// through the embedded platform's two durable Kafka hops.
	RelayKafka bool `json:"relay_kafka,omitempty"`
	// The platform's: the receiver its catalog delivers to, the run's
	// configuration, and whether it runs the ingest role alone.
	ReceiverURL      string        `json:"receiver_url,omitempty"`
	Fanout           int           `json:"fanout,omitempty"`
	Tenants          int           `json:"tenants,omitempty"`
	SlowPartner      bool          `json:"slow_partner,omitempty"`
	Ordered          bool          `json:"ordered,omitempty"`
	MaxInFlight      int           `json:"max_in_flight,omitempty"`
	DataDir          string        `json:"data_dir,omitempty"`
	TraceSampleRatio float64       `json:"trace_sample_ratio,omitempty"`
	BreakerCoolDown  time.Duration `json:"breaker_cool_down,omitempty"`
	IngestOnly       bool          `json:"ingest_only,omitempty"`
	EgressPartitions int           `json:"egress_partitions,omitempty"`
	KafkaKeep        int64         `json:"kafka_keep,omitempty"`
	KafkaSync        bool          `json:"kafka_sync,omitempty"`
	History          time.Duration `json:"history,omitempty"`
	// PartnerCA is the PEM of the receiver's certificate when it serves
	// HTTPS (Config.PartnerTLS): the dispatcher's one root.
	PartnerCA string `json:"partner_ca,omitempty"`
	// Concurrency and PartnerConcurrency are the dispatcher's bounds
	// (dispatch.Config); 0: its defaults.
	Concurrency        int `json:"concurrency,omitempty"`
	PartnerConcurrency int `json:"partner_concurrency,omitempty"`
	// FixedPartnerConcurrency turns the dispatcher's learnt bound off.
	FixedPartnerConcurrency bool `json:"fixed_partner_concurrency,omitempty"`
}

// processRequest asks a process to start measuring itself ("measure"),
// with a CPU profile and a heap profile written to the files named, if
// any; or to stop and report what it measured ("result"); or for its
// figures of the moment ("sample").
type processRequest struct {
	Op          string `json:"op"`
	CPUProfile  string `json:"cpu_profile,omitempty"`
	HeapProfile string `json:"heap_profile,omitempty"`
}

// processReply answers a spec (URL) or a request (the usage, after
// "result"); Error, if set, is why it could not.
type processReply struct {
	URL         string  `json:"url,omitempty"`
	Error       string  `json:"error,omitempty"`
	CPUSeconds  float64 `json:"cpu_seconds,omitempty"`
	PeakRSSMiB  float64 `json:"peak_rss_mib,omitempty"`
	PeakAnonMiB float64 `json:"peak_anon_mib,omitempty"`
	// PeakFilesMiB: Result.PeakFilesMiB.
	PeakFilesMiB map[string]float64 `json:"peak_rss_files_mib,omitempty"`
	// A sample's: the process's CPU seconds so far, its resident set and
	// anonymous part now, its Go heap's live bytes at the last GC, and
	// its goroutines.
	RSSMiB     float64 `json:"rss_mib,omitempty"`
	AnonMiB    float64 `json:"anon_mib,omitempty"`
	HeapMiB    float64 `json:"heap_mib,omitempty"`
	Goroutines int     `json:"goroutines,omitempty"`
}

// ServeProcess is the process end of Config.Command: it reads what to
// serve from in, serves it on 127.0.0.1, answers the bench's requests on
// out, and stops when in is closed (the bench is done, or gone) or ctx
// ends.
func ServeProcess(ctx context.Context, in io.Reader, out io.Writer) error {
	dec, enc := json.NewDecoder(in), json.NewEncoder(out)
	var spec processSpec
	if err := dec.Decode(&spec); err != nil {
		return fmt.Errorf("bench process: reading what to serve: %w", err)
	}
	url, stop, err := spec.start(ctx)
	if err != nil {
		enc.Encode(processReply{Error: err.Error()})
		return err
	}
	defer stop()
	if err := enc.Encode(processReply{URL: url}); err != nil {
		return err
	}
	requests := make(chan processRequest)
	go func() {
		defer close(requests)
		for {
			var req processRequest
			if dec.Decode(&req) != nil {
				return
			}
			select {
			case requests <- req:
			case <-ctx.Done():
				return
			}
		}
	}()
	var m *measurement
	defer func() { m.end() }()
	for {
		var req processRequest
		select {
		case <-ctx.Done():
			return nil
		case r, ok := <-requests:
			if !ok {
				return nil
			}
			req = r
		}
		var reply processReply
		switch req.Op {
		case "measure":
			m.end()
			if m, err = startMeasuring(req); err != nil {
				reply.Error = err.Error()
			}
		case "result":
			if m == nil {
				reply.Error = "not measuring"
				break
			}
			reply = m.end()
		case "sample":
			reply = sampleNow()
		default:
			reply.Error = fmt.Sprintf("unknown request %q", req.Op)
		}
		if err := enc.Encode(reply); err != nil {
			return err
		}
	}
}

// start serves the spec, returning its URL and what stops it.
func (s processSpec) start(ctx context.Context) (string, func(), error) {
	if s.Baseline {
		srv, err := serve(http.HandlerFunc(baseline))
		if err != nil {
			return "", nil, err
		}
		return srv.URL, srv.Close, nil
	}
	if s.Relay && s.RelayKafka {
		return serveKafkaRelay(s)
	}
	if s.Relay {
		return serveRelay(s)
	}
	p, stop, err := startPlatform(ctx, s)
	if err != nil {
		return "", nil, err
	}
	return p.URL, stop, nil
}

// baseline is the bare handler: it reads the body and answers 202.
func baseline(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.WriteHeader(http.StatusAccepted)
	w.Write([]byte(`{"id":"x"}`))
}

// sampleNow is the process's figures of the moment ("sample").
func sampleNow() processReply {
	rss, anon, _ := procStatus()
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(live)
	var heap float64
	if live[0].Value.Kind() == metrics.KindUint64 {
		heap = float64(live[0].Value.Uint64()) / (1 << 20)
	}
	return processReply{CPUSeconds: rusage.CPU().Seconds(), RSSMiB: rss, AnonMiB: anon, HeapMiB: heap, Goroutines: runtime.NumGoroutine()}
}

// measurement is a process measuring itself: its CPU time, its memory
// sampled every 50 ms, and the profiles asked for.
type measurement struct {
	req   processRequest
	cpu0  float64
	mem   *memSampler
	cpuTo *os.File
	ended bool
	usage processReply
}

func startMeasuring(req processRequest) (*measurement, error) {
	m := &measurement{req: req}
	if req.CPUProfile != "" {
		f, err := os.Create(req.CPUProfile)
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, err
		}
		m.cpuTo = f
	}
	m.cpu0 = rusage.CPU().Seconds()
	m.mem = sampleMemory(req.HeapProfile != "")
	return m, nil
}

// end stops measuring (once; nil is not measuring) and returns what was
// measured.
func (m *measurement) end() processReply {
	if m == nil {
		return processReply{}
	}
	if m.ended {
		return m.usage
	}
	m.ended = true
	m.usage.CPUSeconds = rusage.CPU().Seconds() - m.cpu0
	m.usage.PeakRSSMiB, m.usage.PeakAnonMiB, m.usage.PeakFilesMiB = m.mem.stop()
	var errs []error
	if m.cpuTo != nil {
		pprof.StopCPUProfile()
		errs = append(errs, m.cpuTo.Close())
	}
	if m.req.HeapProfile != "" {
		errs = append(errs, os.WriteFile(m.req.HeapProfile, m.mem.heap, 0o600))
	}
	if err := errors.Join(errs...); err != nil {
		m.usage.Error = err.Error()
	}
	return m.usage
}

// process is the bench's end of a process it started.
type process struct {
	URL    string
	what   string // "the platform" or "the baseline", for errors
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	enc    *json.Encoder
	dec    *json.Decoder
	stderr bytes.Buffer // read only once the process has exited
	done   chan struct{}
	err    error // the process's exit, once done is closed
}

// startProcess runs command and has it serve spec. When ctx ends, the
// process's standard input is closed, which stops it.
func startProcess(ctx context.Context, command []string, spec processSpec) (*process, error) {
	if len(command) == 0 {
		return nil, errors.New("bench: no Config.Command to run the platform and the baseline with")
	}
	p := &process{cmd: exec.CommandContext(ctx, command[0], command[1:]...), done: make(chan struct{}), what: "the platform"}
	switch {
	case spec.Baseline:
		p.what = "the baseline"
	case spec.Relay && spec.RelayKafka:
		p.what = "the Kafka relay"
	case spec.Relay:
		p.what = "the relay"
	}
	p.cmd.Stderr = &p.stderr
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.cmd.Cancel = p.stdin.Close
	p.cmd.WaitDelay = time.Minute // then it is killed
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	p.enc, p.dec = json.NewEncoder(p.stdin), json.NewDecoder(stdout)
	reply, err := p.call(spec)
	if err != nil {
		p.Close()
		return nil, err
	}
	p.URL = reply.URL
	return p, nil
}

// call sends v (a processSpec or a processRequest) and returns the reply.
func (p *process) call(v any) (processReply, error) {
	var reply processReply
	err := p.enc.Encode(v)
	if err == nil {
		err = p.dec.Decode(&reply)
	}
	if err != nil {
		// The process is gone: why is on its standard error.
		p.Close()
		return reply, fmt.Errorf("bench: %s's process (%s): %w%s", p.what, p.cmd.Path, err, p.tail())
	}
	if reply.Error != "" {
		return reply, fmt.Errorf("bench: %s's process: %s", p.what, reply.Error)
	}
	return reply, nil
}

// kill SIGKILLs the process and waits for it to exit: nothing it does
// after the signal, not even its deferred cleanup.
func (p *process) kill() {
	p.cmd.Process.Kill()
	<-p.done
	p.stdin.Close()
}

// Close stops the process and waits for it to exit.
func (p *process) Close() error {
	p.stdin.Close()
	<-p.done
	if p.err != nil {
		return fmt.Errorf("bench: %s's process (%s): %w%s", p.what, p.cmd.Path, p.err, p.tail())
	}
	return nil
}

// tail is the end of the process's standard error, once it has exited.
func (p *process) tail() string {
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		return ""
	}
	s := strings.TrimSpace(p.stderr.String())
	if len(s) > 2000 {
		s = "…" + s[len(s)-2000:]
	}
	if s == "" {
		return ""
	}
	return ":\n" + s
}
