package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	catalogv1 "github.com/rebound-grpc/rebound/examples/outage/proto/catalog/v1"
)

// Server timings.
const (
	// primaryServiceTime is how long the healthy primary takes to answer.
	primaryServiceTime = time.Millisecond
	// replicaServiceTime is how long the replica takes: it is far away.
	replicaServiceTime = 15 * time.Millisecond
)

// serve starts a gRPC server of cs on a new 127.0.0.1 port.
func serve(cs catalogv1.CatalogServiceServer) (*grpc.Server, string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	srv := grpc.NewServer()
	catalogv1.RegisterCatalogServiceServer(srv, cs)
	go func() { _ = srv.Serve(lis) }()
	return srv, lis.Addr().String(), nil
}

// primary is the catalog whose health follows the schedule. Every attempt
// that reaches it is counted by the recorder, at its arrival.
type primary struct {
	catalogv1.UnimplementedCatalogServiceServer
	sched Schedule
	rec   *recorder
}

// GetItem implements catalogv1.CatalogServiceServer.
func (p *primary) GetItem(ctx context.Context, req *catalogv1.GetItemRequest) (*catalogv1.GetItemResponse, error) {
	ph := p.sched[p.rec.attempt()]
	switch ph.Kind {
	case KindDown:
		return nil, status.Error(codes.Unavailable, "primary: hard down (scripted)")
	case KindSlow:
		if err := sleep(ctx, ph.Delay); err != nil {
			return nil, err
		}
	case KindFlaky:
		if rand.Float64()*100 < ph.FailPercent {
			return nil, status.Error(codes.Unavailable, "primary: flaky (scripted)")
		}
	}
	if err := sleep(ctx, primaryServiceTime); err != nil {
		return nil, err
	}
	it, err := lookup(req.GetId())
	if err != nil {
		return nil, err
	}
	return &catalogv1.GetItemResponse{Item: it}, nil
}

// replica is the warm standby: it holds only the best-selling items (the
// first hot ids), answers more slowly, and marks its replies stale.
type replica struct {
	catalogv1.UnimplementedCatalogServiceServer
	hot int
}

// GetItem implements catalogv1.CatalogServiceServer.
func (r *replica) GetItem(ctx context.Context, req *catalogv1.GetItemRequest) (*catalogv1.GetItemResponse, error) {
	if err := sleep(ctx, replicaServiceTime+rand.N(5*time.Millisecond)); err != nil {
		return nil, err
	}
	it, err := lookup(req.GetId())
	if err != nil {
		return nil, err
	}
	if n, _ := itemNumber(it.GetId()); n >= r.hot {
		return nil, status.Errorf(codes.NotFound, "replica: %s is not replicated (only the %d best sellers are)", it.GetId(), r.hot)
	}
	return &catalogv1.GetItemResponse{Item: it, Stale: true}, nil
}

// sleep waits d or until ctx is done, then returns ctx's status.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

// itemID is the id of item number n.
func itemID(n int) string { return fmt.Sprintf("sku-%04d", n) }

// itemNumber parses an id written by itemID.
func itemNumber(id string) (int, bool) {
	n, err := strconv.Atoi(strings.TrimPrefix(id, "sku-"))
	return n, err == nil && strings.HasPrefix(id, "sku-") && n >= 0
}

// lookup returns the catalog's item id: made up, but the same on every server.
func lookup(id string) (*catalogv1.Item, error) {
	n, ok := itemNumber(id)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no item %q", id)
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return &catalogv1.Item{Id: id, Name: fmt.Sprintf("Item %d", n), PriceCents: 199 + int64(h.Sum32()%20000)}, nil
}
