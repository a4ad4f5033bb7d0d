#pragma once
// Wiping key material out of protobuf messages. Clear() on a message only sets its strings'
// lengths to zero; the bytes stay in the strings' buffers (which Clear keeps for reuse) until
// something overwrites them. Messages that carry keys (kms.v1.AppKeys, kms.v1.RootSecrets) are
// wiped with this before they go out of scope.

#include <google/protobuf/message.h>

namespace pml::rpc {

// Overwrites the bytes of every string and bytes field of `message`, in nested messages too
// (singular, repeated and map values), with zeros in place, then clears the message. Safe on an
// empty message or one with unset fields; thread-compatible (the caller owns `message`).
void WipeMessage(google::protobuf::Message& message);

}  // namespace pml::rpc
