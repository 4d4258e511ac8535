package policy

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/rebound-grpc/rebound/internal/testpb"
	reboundv1 "github.com/rebound-grpc/rebound/proto/rebound/v1"
)

// FuzzStaticReply feeds random text and JSON to a static_reply step: Build
// never panics, and an accepted reply is wire bytes of the method's reply
// type that round-trip.
func FuzzStaticReply(f *testing.F) {
	for _, s := range []string{
		`message: "static"`, `message: "a" seq: 3 payload: "\x00\xff"`, `seq: 9223372036854775807`, `seq: -1`,
		`message: "\xc3"`, `unknown_field: 1`, `message: `, `[rebound.v1.x] {}`, `{`, `message: "a" message: "b"`, "",
		`{"message": "static"}`, `{"seq": "12"}`, `{"seq": 1e400}`, `{"payload": "AAE="}`, `{"payload": "!"}`, `{"message": null}`,
		`{"message": "x", "message": "y"}`, `[]`, `{"@type": "x"}`, "\x00", `# comment`,
	} {
		f.Add(s, s[0:min(len(s), 1)] == "{")
	}
	files := testFiles(f)
	f.Fuzz(func(t *testing.T, s string, asJSON bool) {
		st := &reboundv1.StaticReplyStep{Text: s}
		if asJSON {
			st = &reboundv1.StaticReplyStep{Json: s}
		}
		p := &reboundv1.RecoveryPolicy{Fallback: &reboundv1.Fallback{Steps: []*reboundv1.FallbackStep{
			{Step: &reboundv1.FallbackStep_StaticReply{StaticReply: st}},
		}}}
		tab, err := Build(Input{Files: files, Overrides: map[string]*reboundv1.RecoveryPolicy{echo: p}})
		if err != nil {
			return
		}
		m := tab.Lookup(echo)
		var wire []byte
		found := false
		for _, step := range m.Steps {
			if step.Kind == StepStatic {
				wire, found = step.Static, true
			}
		}
		if !found {
			t.Fatalf("Build(static %q) accepted without a static step: %+v", s, m.Steps)
		}
		var reply testpb.EchoResponse
		if err := proto.Unmarshal(wire, &reply); err != nil {
			t.Fatalf("static %q compiled to %x, which does not unmarshal as EchoResponse: %v", s, wire, err)
		}
		again, err := proto.MarshalOptions{Deterministic: true}.Marshal(&reply)
		if err != nil || string(again) != string(wire) {
			t.Fatalf("static %q: wire %x does not round-trip (%x, %v)", s, wire, again, err)
		}
	})
}
