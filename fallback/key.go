package fallback

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"hash"
	"sync"
)

// keyDomain separates rebound's cache keys from any other SHA-256 use of the
// same bytes, and versions the encoding: a change of encoding changes the tag.
const keyDomain = "rebound/fallback.Key/v1\x00"

// KeyDigestLen is the length of the digest part of a key made by [Key]: the
// unpadded base64url encoding of a SHA-256 sum.
const KeyDigestLen = 43

// Key derives the cache key of one call: fullMethod, then ':', then the
// unpadded base64url SHA-256 digest (43 characters) of a length-prefixed
// encoding of fullMethod, req and every value of scope, e.g.
//
//	/pkg.Svc/Get:Y2r0mX0x...
//
// req is the deterministic protobuf marshal of the request; scope holds the
// values of the metadata keys that scope the cache, in the order the policy
// lists them (one string per key, "" for an absent key).
//
// Every input is prefixed with its length, so distinct (fullMethod, req,
// scope) tuples give distinct keys: scope {"a", "bc"} never collides with
// {"ab", "c"}, nor {"a"} with {"a", ""}. A nil and an empty req are the same
// input. Only fullMethod appears in the key in plain form; scope values, such
// as an authorization token, are present only through the digest.
//
// Key is safe for concurrent use. It allocates only the returned string; see
// [AppendKey] to avoid that.
func Key(fullMethod string, req []byte, scope []string) string {
	var buf [192]byte
	return string(AppendKey(buf[:0], fullMethod, req, scope))
}

// AppendKey appends the key that [Key] derives to dst and returns the
// extended slice. With a dst of sufficient capacity it does not allocate.
//
// AppendKey is safe for concurrent use.
func AppendKey(dst []byte, fullMethod string, req []byte, scope []string) []byte {
	dst = append(dst, fullMethod...)
	dst = append(dst, ':')
	kh := keyHashers.Get().(*keyHasher)
	kh.writeInput(fullMethod, req, scope)
	dst = base64.RawURLEncoding.AppendEncode(dst, kh.sum())
	keyHashers.Put(kh)
	return dst
}

var keyHashers = sync.Pool{New: func() any { return newKeyHasher(sha256.New()) }}

// keyHasher feeds the length-prefixed key input to h through a small buffer,
// so that strings reach the hash without a conversion that would allocate.
type keyHasher struct {
	h   hash.Hash
	buf []byte
	out [sha256.Size]byte
}

const keyHasherBuf = 512

func newKeyHasher(h hash.Hash) *keyHasher {
	return &keyHasher{h: h, buf: make([]byte, 0, keyHasherBuf)}
}

// writeInput resets the hasher and writes the encoding of one key's inputs:
//
//	domain tag
//	uvarint(len(fullMethod)) fullMethod
//	uvarint(len(req))        req
//	uvarint(len(scope))
//	for each value v: uvarint(len(v)) v
func (kh *keyHasher) writeInput(fullMethod string, req []byte, scope []string) {
	kh.h.Reset()
	kh.buf = append(kh.buf[:0], keyDomain...)
	kh.writeString(fullMethod)
	kh.buf = binary.AppendUvarint(kh.buf, uint64(len(req)))
	if len(kh.buf)+len(req) <= cap(kh.buf) {
		kh.buf = append(kh.buf, req...)
	} else {
		kh.flush()
		kh.h.Write(req)
	}
	kh.buf = binary.AppendUvarint(kh.buf, uint64(len(scope)))
	for _, v := range scope {
		kh.writeString(v)
	}
	kh.flush()
}

func (kh *keyHasher) writeString(s string) {
	kh.buf = binary.AppendUvarint(kh.buf, uint64(len(s)))
	for len(s) > 0 {
		if len(kh.buf) == cap(kh.buf) {
			kh.flush()
		}
		n := min(len(s), cap(kh.buf)-len(kh.buf))
		kh.buf = append(kh.buf, s[:n]...)
		s = s[n:]
	}
}

func (kh *keyHasher) flush() {
	kh.h.Write(kh.buf)
	kh.buf = kh.buf[:0]
}

func (kh *keyHasher) sum() []byte {
	return kh.h.Sum(kh.out[:0])
}
