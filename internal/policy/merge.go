package policy

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	reboundv1 "github.com/rebound-grpc/rebound/proto/rebound/v1"
)

// Merge returns a new policy: weak overridden by strong, field by field.
// A set scalar replaces the weaker value; a message merges recursively; a
// non-empty repeated field replaces the weaker list whole; a oneof member
// replaces a different weaker member. Neither input is modified.
func Merge(weak, strong *reboundv1.RecoveryPolicy) *reboundv1.RecoveryPolicy {
	out := &reboundv1.RecoveryPolicy{}
	if weak != nil {
		out = proto.Clone(weak).(*reboundv1.RecoveryPolicy)
	}
	if strong != nil {
		mergeMessage(out.ProtoReflect(), proto.Clone(strong).ProtoReflect())
	}
	return out
}

// mergeMessage merges src into dst; src is owned by the caller (a clone), so
// its lists and messages may be moved into dst.
func mergeMessage(dst, src protoreflect.Message) {
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() || fd.IsMap():
			dst.Set(fd, v)
		case fd.Message() != nil:
			if od := fd.ContainingOneof(); od != nil && dst.WhichOneof(od) != fd {
				dst.Set(fd, v)
				return true
			}
			if !dst.Has(fd) {
				dst.Set(fd, v)
				return true
			}
			mergeMessage(dst.Mutable(fd).Message(), v.Message())
		default:
			dst.Set(fd, v)
		}
		return true
	})
}
