package interceptor

import "google.golang.org/protobuf/proto"

// ReplayBufferBytes is defaultReplayBufferBytes.
const ReplayBufferBytes = defaultReplayBufferBytes

// ReplayRoundTrip adds msgs to a fresh replay buffer, in order, and replays
// it: kept is how many add accepted, size the buffer's largest size in
// bytes, replayed the messages replay sent (none once a message did not fit:
// the buffer is then released and the stream committed).
func ReplayRoundTrip(msgs []proto.Message) (kept, size int, replayed []proto.Message, err error) {
	r := replayBuffer{limit: defaultReplayBufferBytes}
	defer r.free()
	for _, m := range msgs {
		if r.add(m) {
			kept++
		}
		if r.b != nil {
			size = max(size, len(*r.b))
		}
	}
	err = r.replay(func(m any) error {
		replayed = append(replayed, m.(proto.Message))
		return nil
	})
	return kept, size, replayed, err
}
