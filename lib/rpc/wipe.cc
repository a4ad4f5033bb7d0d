#include "lib/rpc/wipe.h"

#include <string.h>  // explicit_bzero (glibc): a store the compiler may not drop

#include <string>
#include <vector>

namespace pml::rpc {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

void ZeroString(const std::string& s) {
  // The reference is the message's own storage (or `scratch` below); writing through it changes
  // the bytes, never the length or the buffer, so the message stays valid.
  if (!s.empty())
    explicit_bzero(const_cast<char*>(s.data()), s.size());
}

void ZeroFields(Message& m) {
  const Reflection* r = m.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  r->ListFields(m, &fields);  // set fields only (and every non-empty repeated one)
  for (const FieldDescriptor* f : fields) {
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
      std::string scratch;
      if (f->is_repeated()) {
        for (int i = 0; i < r->FieldSize(m, f); ++i)
          ZeroString(r->GetRepeatedStringReference(m, f, i, &scratch));
      } else {
        ZeroString(r->GetStringReference(m, f, &scratch));
      }
      explicit_bzero(scratch.data(), scratch.size());
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (f->is_repeated()) {  // map fields are repeated entry messages
        for (int i = 0; i < r->FieldSize(m, f); ++i)
          ZeroFields(*r->MutableRepeatedMessage(&m, f, i));
      } else {
        ZeroFields(*r->MutableMessage(&m, f));
      }
    }
  }
}

}  // namespace

void WipeMessage(Message& message) {
  ZeroFields(message);
  message.Clear();
}

}  // namespace pml::rpc
