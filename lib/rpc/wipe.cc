#include "lib/rpc/wipe.h"

#include <google/protobuf/unknown_field_set.h>
#include <string.h>  // explicit_bzero (glibc): a store the compiler may not drop

#include <string>
#include <vector>

namespace pml::rpc {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using google::protobuf::UnknownField;
using google::protobuf::UnknownFieldSet;

void ZeroString(const std::string& s) {
  // The reference is the message's own storage (or `scratch` below); writing through it changes
  // the bytes, never the length or the buffer, so the message stays valid.
  if (!s.empty())
    explicit_bzero(const_cast<char*>(s.data()), s.size());
}

void ZeroUnknown(UnknownFieldSet& set) {
  for (int i = 0; i < set.field_count(); ++i) {
    UnknownField* f = set.mutable_field(i);
    if (f->type() == UnknownField::TYPE_LENGTH_DELIMITED) {
      std::string* s = f->mutable_length_delimited();
      explicit_bzero(s->data(), s->size());
    } else if (f->type() == UnknownField::TYPE_GROUP) {
      ZeroUnknown(*f->mutable_group());
    }
  }
}

void ZeroFields(Message& m) {
  const Reflection* r = m.GetReflection();
  ZeroUnknown(*r->MutableUnknownFields(&m));
  std::vector<const FieldDescriptor*> fields;
  r->ListFields(m, &fields);  // set fields only (and every non-empty repeated one)
  for (const FieldDescriptor* f : fields) {
    if (f->is_map())
      continue;  // MutableRepeatedMessage would zero a copy (see wipe.h)
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
      if (f->is_repeated()) {
        for (int i = 0; i < r->FieldSize(m, f); ++i)
          ZeroFields(*r->MutableRepeatedMessage(&m, f, i));
      } else {
        ZeroFields(*r->MutableMessage(&m, f));
      }
    }
  }
}

}  // namespace

void ZeroMessage(Message& message) { ZeroFields(message); }

void WipeMessage(Message& message) {
  ZeroFields(message);
  message.Clear();
}

}  // namespace pml::rpc
