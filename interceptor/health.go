package interceptor

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// healthSetter is a pattern that follows the target's health status.
type healthSetter interface {
	SetHealth(now time.Time, serving bool)
}

// Backoff between health Watch streams that ended with an error.
const (
	healthRetryMin = 500 * time.Millisecond
	healthRetryMax = 30 * time.Second
)

// watchers owns the Suite's health watchers: one goroutine per watched
// (pattern, target), all stopped by Close.
type watchers struct {
	mu      sync.Mutex
	closed  bool
	cancels []context.CancelFunc
	wg      sync.WaitGroup
}

// watchHealth starts following cc's grpc.health.v1 status for ts's pattern,
// once per target state. NOT_SERVING opens the pattern, SERVING (after
// NOT_SERVING) starts its recovery; UNIMPLEMENTED means the target gives no
// health signal and the watcher stops.
func (s *Suite) watchHealth(ts *targetState, cc *grpc.ClientConn, service, method string) {
	hs, ok := ts.pattern.(healthSetter)
	if !ok || cc == nil || !ts.healthWatch.CompareAndSwap(false, true) {
		return
	}
	w := &s.watchers
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancels = append(w.cancels, cancel)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		s.followHealth(ctx, healthpb.NewHealthClient(cc), service, hs, method, ts.target)
	}()
}

func (s *Suite) followHealth(ctx context.Context, client healthpb.HealthClient, service string, hs healthSetter, method, target string) {
	log := s.cfg.logger.With(zap.String("method", method), zap.String("target", target), zap.String("health_service", service))
	wait := healthRetryMin
	for {
		stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: service})
		for err == nil {
			var resp *healthpb.HealthCheckResponse
			if resp, err = stream.Recv(); err != nil {
				break
			}
			wait = healthRetryMin
			switch resp.GetStatus() {
			case healthpb.HealthCheckResponse_SERVING:
				hs.SetHealth(time.Now(), true)
			case healthpb.HealthCheckResponse_NOT_SERVING:
				hs.SetHealth(time.Now(), false)
			}
		}
		if ctx.Err() != nil {
			return
		}
		if status.Code(err) == codes.Unimplemented {
			// No health signal: never hold the pattern open on its account.
			hs.SetHealth(time.Now(), true)
			log.Info("rebound: the target has no health service; following calls only")
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, healthRetryMax)
	}
}

// close stops every watcher and waits for them.
func (w *watchers) close() {
	w.mu.Lock()
	w.closed = true
	cancels := w.cancels
	w.cancels = nil
	w.mu.Unlock()
	for _, c := range cancels {
		c()
	}
	w.wg.Wait()
}
