#pragma once
// Wiping key material out of protobuf messages. Clear() on a message only sets its strings'
// lengths to zero; the bytes stay in the strings' buffers (which Clear keeps for reuse) until
// something overwrites them. Messages that carry keys (kms.v1.AppKeys, kms.v1.RootSecrets) are
// wiped with this before they go out of scope.

#include <google/protobuf/message.h>

namespace pml::rpc {

// Overwrites the bytes of every string and bytes field of `message`, in nested messages too
// (singular and repeated), and of its length-delimited unknown fields (a newer peer's field this
// build does not know), with zeros in place, then clears the message. Map fields are not reached
// (reflection can only copy them out; no message that carries keys has one). Safe on an empty
// message or one with unset fields; thread-compatible (the caller owns `message`).
void WipeMessage(google::protobuf::Message& message);

// WipeMessage without the final clear: the fields keep their sizes, their bytes are zero.
void ZeroMessage(google::protobuf::Message& message);

}  // namespace pml::rpc
