package interceptor

import (
	orcav3 "github.com/cncf/xds/go/xds/data/orca/v3"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/rebound-grpc/rebound/internal/policy"
	"github.com/rebound-grpc/rebound/pattern"
)

// orcaTrailerKey is the trailer in which a server sends its per-call ORCA
// load report (google.golang.org/grpc/orca on the server side).
const orcaTrailerKey = "endpoint-load-metrics-bin"

// loadReport reads the ORCA load report of an attempt's trailer, for
// patterns that use server load (adaptive_recovery.max_utilization). A
// missing or malformed report is nil: no load signal.
func loadReport(pol *policy.Method, trailer metadata.MD) *pattern.LoadReport {
	if !pol.WantsLoad || trailer == nil {
		return nil
	}
	vals := trailer.Get(orcaTrailerKey)
	if len(vals) == 0 {
		return nil
	}
	var r orcav3.OrcaLoadReport
	if err := proto.Unmarshal([]byte(vals[0]), &r); err != nil {
		return nil
	}
	rps := r.GetRpsFractional()
	if rps == 0 {
		rps = float64(r.GetRps())
	}
	return &pattern.LoadReport{
		CPUUtilization:         r.GetCpuUtilization(),
		MemUtilization:         r.GetMemUtilization(),
		ApplicationUtilization: r.GetApplicationUtilization(),
		RPS:                    rps,
	}
}
