// Command electors runs one Go leader-election candidate on a Kubernetes
// lock, as the Go programs tenure shares locks with run it: client-go's
// tools/leaderelection (LeaseLock) or Istio's fork (Lease, ConfigMap and
// MultiLock locks, the holder key and KeyComparison pre-emption). It prints
// its own view as JSON lines on stdout:
//
//	{"event":"started","identity":"go-a","wall_ns":...}
//	{"event":"work_done","identity":"go-a","wall_ns":...}   (its context ended)
//	{"event":"stopped","identity":"go-a","wall_ns":...}
//	{"event":"new_leader","identity":"go-a","leader":"rust-b","wall_ns":...}
//	{"event":"exit","identity":"go-a","wall_ns":...}
//
// SIGTERM or SIGINT cancels the context: with -release (the default) the
// leader releases the lock as client-go does (empty holder, 1 s lease).
//
// Arguments after the flags are a command run while leading, as a Go
// controller would run its work: started in OnStartedLeading with
// TENURE_IDENTITY and TENURE_FENCING_TOKEN (the lock's leaderTransitions,
// read back while this candidate holds it), killed (SIGKILL to its process
// group) when the elector cancels the leading context, and never before.
// The chaos harness runs its worker this way, so that a Go leader's work is
// judged by the same heartbeat log and fencing downstream as tenure's.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"

	istio "istio.io/istio/pilot/pkg/leaderelection/k8sleaderelection"
	istiolock "istio.io/istio/pilot/pkg/leaderelection/k8sleaderelection/k8sresourcelock"
)

type event struct {
	Event    string `json:"event"`
	Identity string `json:"identity"`
	Leader   string `json:"leader,omitempty"`
	Error    string `json:"error,omitempty"`
	WallNs   int64  `json:"wall_ns"`
}

var (
	out   = json.NewEncoder(os.Stdout)
	outMu sync.Mutex
)

func emit(e event) {
	e.WallNs = time.Now().UnixNano()
	outMu.Lock()
	defer outMu.Unlock()
	_ = out.Encode(e)
}

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the API server")
	impl := flag.String("impl", "client-go", "client-go or istio")
	kind := flag.String("lock", "lease", "lease, configmap or multilock (configmap and multilock: istio only)")
	namespace := flag.String("namespace", "default", "the lock's namespace")
	name := flag.String("name", "", "the lock's name")
	identity := flag.String("identity", "", "this candidate's identity")
	lease := flag.Duration("lease", 15*time.Second, "lease duration")
	renew := flag.Duration("renew", 10*time.Second, "renew deadline")
	retry := flag.Duration("retry", 2*time.Second, "retry period")
	release := flag.Bool("release", true, "release the lock on SIGTERM (ReleaseOnCancel)")
	key := flag.String("key", "", "istio: this candidate's holder key")
	preemptBelow := flag.String("preempt-below", "", "istio: pre-empt a holder whose key sorts below this")
	once := flag.Bool("once", false, "istio: return after one term, as client-go's RunOrDie does (default: campaign again, as Istio's pilot does)")
	measureUpdates := flag.Int("measure-updates", 0, "client-go: instead of campaigning, write the Lease N times in a row as a leader renews it (resourcelock.LeaseLock.Update) and print each write's time as JSON")
	coordinated := flag.Bool("coordinated", false, "client-go: coordinated leader election (publish a LeaseCandidate; the controller names the holder)")
	binaryVersion := flag.String("binary-version", "1.37.0", "client-go, -coordinated: the candidate's binary version")
	emulationVersion := flag.String("emulation-version", "1.37.0", "client-go, -coordinated: the candidate's emulation version")
	events := flag.String("events", "", "client-go: record leader election Events (tools/record) reported by this component")
	contentType := flag.String("content-type", "", "request encoding (default: client-go's, protobuf for built-in types; tenure's API fixture speaks only application/json)")
	flag.Parse()
	if *name == "" || *identity == "" {
		fmt.Fprintln(os.Stderr, "electors: -name and -identity are required")
		os.Exit(2)
	}
	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, "electors:", err)
		os.Exit(2)
	}
	if *contentType != "" {
		config.ContentType = *contentType
	}
	client := kubernetes.NewForConfigOrDie(config)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// The lock, for the token: set below, read only once leading.
	var get func(ctx context.Context) (holder string, transitions int, err error)
	started := func(ctx context.Context) {
		emit(event{Event: "started", Identity: *identity})
		if len(flag.Args()) > 0 {
			runWork(ctx, *identity, get, flag.Args())
		}
		<-ctx.Done()
		// The work is told to stop here (before any release).
		emit(event{Event: "work_done", Identity: *identity})
	}
	stopped := func() { emit(event{Event: "stopped", Identity: *identity}) }
	newLeader := func(leader string) { emit(event{Event: "new_leader", Identity: *identity, Leader: leader}) }
	meta := metav1.ObjectMeta{Name: *name, Namespace: *namespace}

	if *measureUpdates > 0 {
		// Writes back to back would meet client-go's client-side rate
		// limit (QPS 5, burst 10: 200 ms a request) that a leader renewing
		// every retry period never meets: off, to time the write itself.
		config.QPS = -1
		client = kubernetes.NewForConfigOrDie(config)
		measure(ctx, client, meta, *identity, *measureUpdates)
		return
	}

	switch *impl {
	case "client-go":
		if *kind != "lease" {
			fmt.Fprintln(os.Stderr, "electors: client-go has only Lease locks")
			os.Exit(2)
		}
		lockConfig := resourcelock.ResourceLockConfig{Identity: *identity}
		if *events != "" {
			// client-go's own recorder, as controllers wire it.
			broadcaster := record.NewBroadcaster()
			broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
			lockConfig.EventRecorder = broadcaster.NewRecorder(scheme.Scheme,
				corev1.EventSource{Component: *events, Host: *identity})
			defer func() {
				// Events are sent by a goroutine of the broadcaster's: let
				// the last one reach the server before the process exits.
				time.Sleep(time.Second)
				broadcaster.Shutdown()
			}()
		}
		lock := &resourcelock.LeaseLock{
			LeaseMeta:  meta,
			Client:     client.CoordinationV1(),
			LockConfig: lockConfig,
		}
		get = func(ctx context.Context) (string, int, error) {
			r, _, err := lock.Get(ctx)
			if err != nil {
				return "", 0, err
			}
			return r.HolderIdentity, r.LeaderTransitions, nil
		}
		if *coordinated {
			candidate, waitForSync, err := leaderelection.NewCandidate(client, *namespace, *identity, *name,
				*binaryVersion, *emulationVersion, coordinationv1.OldestEmulationVersion)
			if err != nil {
				fmt.Fprintln(os.Stderr, "electors:", err)
				os.Exit(2)
			}
			go candidate.Run(ctx)
			waitForSync.WaitForCacheSync(ctx.Done())
		}
		leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
			Coordinated:     *coordinated,
			Lock:            lock,
			LeaseDuration:   *lease,
			RenewDeadline:   *renew,
			RetryPeriod:     *retry,
			ReleaseOnCancel: *release,
			Name:            *name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: started,
				OnStoppedLeading: stopped,
				OnNewLeader:      newLeader,
			},
		})
	case "istio":
		lockType := map[string]string{
			"lease":     istiolock.LeasesResourceLock,
			"configmap": istiolock.ConfigMapsResourceLock,
			"multilock": istiolock.ConfigMapsLeasesResourceLock,
		}[*kind]
		if lockType == "" {
			fmt.Fprintln(os.Stderr, "electors: unknown -lock", *kind)
			os.Exit(2)
		}
		lock, err := istiolock.New(lockType, *namespace, *name, client.CoreV1(), client.CoordinationV1(),
			istiolock.ResourceLockConfig{Identity: *identity, Key: *key})
		if err != nil {
			fmt.Fprintln(os.Stderr, "electors:", err)
			os.Exit(2)
		}
		get = func(ctx context.Context) (string, int, error) {
			r, _, err := lock.Get(ctx)
			if err != nil {
				return "", 0, err
			}
			return r.HolderIdentity, r.LeaderTransitions, nil
		}
		var cmp istio.KeyComparisonFunc
		if *preemptBelow != "" {
			ours := *preemptBelow
			cmp = func(existing string) bool { return existing < ours }
		}
		elector, err := istio.NewLeaderElector(istio.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   *lease,
			RenewDeadline:   *renew,
			RetryPeriod:     *retry,
			ReleaseOnCancel: *release,
			KeyComparison:   cmp,
			Name:            *name,
			Callbacks: istio.LeaderCallbacks{
				OnStartedLeading: started,
				OnStoppedLeading: stopped,
				OnNewLeader:      newLeader,
			},
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "electors:", err)
			os.Exit(2)
		}
		// Istio's elector returns when it loses the lock; campaign again
		// until told to stop, as Istio's pilot does.
		for ctx.Err() == nil {
			elector.Run(ctx)
			if *once {
				break
			}
		}
	default:
		fmt.Fprintln(os.Stderr, "electors: unknown -impl", *impl)
		os.Exit(2)
	}
	emit(event{Event: "exit", Identity: *identity})
}

// runWork starts argv once this candidate is seen holding the lock, and
// kills it when ctx ends. A read that fails or shows another holder (the
// term already ended) starts nothing; ctx will end.
func runWork(ctx context.Context, identity string, get func(context.Context) (string, int, error), argv []string) {
	holder, transitions, err := get(ctx)
	if err != nil || holder != identity {
		emit(event{Event: "work_skipped", Identity: identity, Leader: holder, Error: fmt.Sprint(err)})
		return
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "TENURE_IDENTITY="+identity, "TENURE_FENCING_TOKEN="+strconv.Itoa(transitions))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	// Its own process group, killed whole; it dies with this process too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		emit(event{Event: "work_failed", Identity: identity, Error: err.Error()})
		return
	}
	<-ctx.Done()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
}

// measure writes the Lease n times in a row as client-go's leader renews
// it (the LeaseLock's Update, on the object its last write returned) and
// prints the client-side times: {"event":"updates","durations_ns":[...]}.
func measure(ctx context.Context, client kubernetes.Interface, meta metav1.ObjectMeta, identity string, n int) {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  meta,
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
	}
	now := metav1.NewTime(time.Now())
	record := resourcelock.LeaderElectionRecord{
		HolderIdentity: identity, LeaseDurationSeconds: 15, AcquireTime: now, RenewTime: now,
	}
	if err := lock.Create(ctx, record); err != nil {
		fmt.Fprintln(os.Stderr, "electors: create:", err)
		os.Exit(1)
	}
	took := make([]int64, 0, n)
	for i := 0; i < n; i++ {
		record.RenewTime = metav1.NewTime(time.Now())
		start := time.Now()
		if err := lock.Update(ctx, record); err != nil {
			fmt.Fprintln(os.Stderr, "electors: update:", err)
			os.Exit(1)
		}
		took = append(took, time.Since(start).Nanoseconds())
	}
	sort.Slice(took, func(a, b int) bool { return took[a] < took[b] })
	outMu.Lock()
	defer outMu.Unlock()
	_ = out.Encode(map[string]any{"event": "updates", "identity": identity, "durations_ns": took})
}
