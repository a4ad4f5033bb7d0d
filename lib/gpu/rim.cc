#include "lib/gpu/rim.h"

#include <algorithm>
#include <mutex>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <nlohmann/json.hpp>
#include <xmlsec/crypto.h>
#include <xmlsec/errors.h>
#include <xmlsec/openssl/evp.h>
#include <xmlsec/xmldsig.h>
#include <xmlsec/xmlsec.h>
#include <xmlsec/xmltree.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "lib/core/file.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/x509.h"
#include "lib/crypto/x509_ext.h"
#include "lib/gpu/errors.h"

namespace pml::gpu {
namespace {

// libxml2 / xmlsec handles, each wrapped where it is created (STYLE.md §4).
template <auto kFree>
struct XDeleter {
  template <typename T>
  void operator()(T* p) const {
    kFree(p);
  }
};
using XmlDocPtr = std::unique_ptr<xmlDoc, XDeleter<xmlFreeDoc>>;
// xmlFree is a function-pointer variable, not a function: wrap it.
void FreeXmlChar(xmlChar* p) { xmlFree(p); }
using XmlCharPtr = std::unique_ptr<xmlChar, XDeleter<FreeXmlChar>>;
using DSigCtxPtr = std::unique_ptr<xmlSecDSigCtx, XDeleter<xmlSecDSigCtxDestroy>>;
using SecKeyPtr = std::unique_ptr<xmlSecKey, XDeleter<xmlSecKeyDestroy>>;
using SecKeyDataPtr = std::unique_ptr<xmlSecKeyData, XDeleter<xmlSecKeyDataDestroy>>;

constexpr absl::string_view kSwidNs = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd";
constexpr absl::string_view kDsigNs = "http://www.w3.org/2000/09/xmldsig#";

absl::Status RimMalformed(absl::string_view detail) {
  return MakeError(absl::StatusCode::kInvalidArgument, error_class::kRimMalformed, detail);
}

void QuietXmlSecErrors(const char*, int, const char*, const char*, const char*, int, const char*) {}

// One-time, process-wide libxml2 + xmlsec1 (OpenSSL backend) initialization.
absl::Status InitXmlSec() {
  static absl::Status* status = [] {
    xmlInitParser();
    if (xmlSecInit() < 0)
      return new absl::Status(absl::InternalError("xmlSecInit failed"));
    if (xmlSecCheckVersion() != 1) {
      return new absl::Status(absl::InternalError("xmlsec library version mismatch"));
    }
    if (xmlSecCryptoAppInit(nullptr) < 0 || xmlSecCryptoInit() < 0) {
      return new absl::Status(absl::InternalError("xmlsec crypto init failed"));
    }
    xmlSecErrorsSetCallback(QuietXmlSecErrors);
    return new absl::Status();
  }();
  return *status;
}

absl::StatusOr<XmlDocPtr> ParseXml(absl::string_view xml) {
  if (xml.size() > kMaxRimBytes) {
    return RimMalformed(
        absl::StrCat("document is ", xml.size(), " bytes, more than ", kMaxRimBytes));
  }
  PML_RETURN_IF_ERROR(InitXmlSec());
  // No XML_PARSE_NOENT / DTDLOAD (no entity expansion, no external DTD), no network. Blanks are
  // kept: the signature's canonical form depends on them.
  XmlDocPtr doc(xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "rim.xml", nullptr,
                              XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
  if (doc == nullptr)
    return RimMalformed("document is not well-formed XML");
  if (doc->intSubset != nullptr || doc->extSubset != nullptr) {
    return RimMalformed("document has a DTD");
  }
  if (xmlDocGetRootElement(doc.get()) == nullptr)
    return RimMalformed("document has no root");
  return doc;
}

bool IsElement(const xmlNode* n, absl::string_view local, absl::string_view ns) {
  if (n == nullptr || n->type != XML_ELEMENT_NODE)
    return false;
  if (absl::string_view(reinterpret_cast<const char*>(n->name)) != local)
    return false;
  return n->ns != nullptr && n->ns->href != nullptr &&
         absl::string_view(reinterpret_cast<const char*>(n->ns->href)) == ns;
}

// The attribute with local name `name` in any namespace (RIMs put Hash{i} in the sha384
// namespace and TCG attributes in the RIM-IM namespace). nullopt when absent.
std::optional<std::string> Attr(const xmlNode* n, absl::string_view name) {
  for (const xmlAttr* a = n->properties; a != nullptr; a = a->next) {
    if (absl::string_view(reinterpret_cast<const char*>(a->name)) != name)
      continue;
    XmlCharPtr v(xmlNodeListGetString(n->doc, a->children, 1));
    return v == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(v.get()));
  }
  return std::nullopt;
}

std::vector<const xmlNode*> Children(const xmlNode* n, absl::string_view local,
                                     absl::string_view ns) {
  std::vector<const xmlNode*> out;
  for (const xmlNode* c = n->children; c != nullptr; c = c->next) {
    if (IsElement(c, local, ns))
      out.push_back(c);
  }
  return out;
}

absl::StatusOr<const xmlNode*> OneChild(const xmlNode* n, absl::string_view local,
                                        absl::string_view ns) {
  auto c = Children(n, local, ns);
  if (c.size() != 1) {
    return RimMalformed(absl::StrCat("want one ", local, " element, found ", c.size()));
  }
  return c[0];
}

absl::StatusOr<uint32_t> ParseUint(const xmlNode* n, absl::string_view attr, uint32_t max) {
  auto v = Attr(n, attr);
  uint32_t out = 0;
  if (!v.has_value() || !absl::SimpleAtoi(*v, &out) || out > max) {
    return RimMalformed(absl::StrCat("Resource ", attr, " is missing or not an integer <= ", max));
  }
  return out;
}

absl::StatusOr<RimMeasurement> ParseResource(const xmlNode* n) {
  RimMeasurement m;
  PML_ASSIGN_OR_RETURN(m.index, ParseUint(n, "index", 0xffff));
  auto active = Attr(n, "active");
  if (!active.has_value())
    return RimMalformed(absl::StrCat("Resource ", m.index, " has no active"));
  const std::string lower = absl::AsciiStrToLower(*active);
  if (lower != "true" && lower != "false") {
    return RimMalformed(absl::StrCat("Resource ", m.index, " active is not True/False"));
  }
  m.active = lower == "true";
  m.name = Attr(n, "name").value_or("");
  PML_ASSIGN_OR_RETURN(uint32_t size, ParseUint(n, "size", 1024));
  m.size = size;
  PML_ASSIGN_OR_RETURN(uint32_t alternatives, ParseUint(n, "alternatives", kMaxRimAlternatives));
  for (uint32_t i = 0; i < alternatives; ++i) {
    auto h = Attr(n, absl::StrCat("Hash", i));
    if (!h.has_value())
      return RimMalformed(absl::StrCat("Resource ", m.index, " lacks Hash", i));
    auto bytes = core::HexDecode(*h);
    if (!bytes.ok() || bytes->size() != m.size) {
      return RimMalformed(
          absl::StrCat("Resource ", m.index, " Hash", i, " is not ", m.size, " bytes of hex"));
    }
    m.alternatives.push_back(*std::move(bytes));
  }
  if (m.active && m.alternatives.empty()) {
    return RimMalformed(absl::StrCat("active Resource ", m.index, " has no hash"));
  }
  return m;
}

// Base64 text of an element with whitespace removed.
std::string ElementText(const xmlNode* n) {
  XmlCharPtr v(xmlNodeGetContent(n));
  std::string out;
  if (v == nullptr)
    return out;
  for (const char* p = reinterpret_cast<const char*>(v.get()); *p != '\0'; ++p) {
    if (!absl::ascii_isspace(static_cast<unsigned char>(*p)))
      out += *p;
  }
  return out;
}

absl::StatusOr<const xmlNode*> SignatureNode(const xmlNode* root) {
  auto sigs = Children(root, "Signature", kDsigNs);
  if (sigs.size() != 1) {
    return RimMalformed(absl::StrCat("want one enveloped Signature, found ", sigs.size()));
  }
  return sigs[0];
}

absl::StatusOr<std::vector<crypto::X509Ptr>> KeyInfoCertificates(const xmlNode* sig) {
  std::vector<crypto::X509Ptr> certs;
  for (const xmlNode* ki : Children(sig, "KeyInfo", kDsigNs)) {
    for (const xmlNode* xd : Children(ki, "X509Data", kDsigNs)) {
      for (const xmlNode* xc : Children(xd, "X509Certificate", kDsigNs)) {
        auto der = core::Base64Decode(ElementText(xc));
        if (!der.ok())
          return RimMalformed("X509Certificate is not base64");
        auto cert = crypto::ParseDerCertificate(*der);
        if (!cert.ok())
          return RimMalformed("X509Certificate does not parse");
        certs.push_back(*std::move(cert));
        if (certs.size() > crypto::kMaxChainCertificates) {
          return RimMalformed("too many X509Certificate elements");
        }
      }
    }
  }
  if (certs.empty())
    return RimMalformed("KeyInfo holds no X509Certificate");
  return certs;
}

// The signer: the one certificate that issued none of the others and is not self-signed.
absl::StatusOr<size_t> SignerIndex(const std::vector<crypto::X509Ptr>& certs) {
  std::optional<size_t> signer;
  for (size_t i = 0; i < certs.size(); ++i) {
    bool issues_other = false;
    for (size_t j = 0; j < certs.size(); ++j) {
      if (i != j && crypto::IssuerNameMatches(*certs[j], *certs[i]))
        issues_other = true;
    }
    if (issues_other || crypto::IssuerNameMatches(*certs[i], *certs[i]))
      continue;
    if (signer.has_value())
      return RimMalformed("KeyInfo holds more than one end-entity certificate");
    signer = i;
  }
  if (!signer.has_value())
    return RimMalformed("KeyInfo holds no end-entity certificate");
  return *signer;
}

absl::Status InvalidSignature(absl::string_view detail) {
  return MakeError(absl::StatusCode::kFailedPrecondition, error_class::kRimInvalidSignature,
                   detail);
}

absl::Status VerifyXmlSignature(const xmlNode* sig_node, const EVP_PKEY& key) {
  DSigCtxPtr ctx(xmlSecDSigCtxCreate(nullptr));
  if (ctx == nullptr)
    return absl::InternalError("xmlSecDSigCtxCreate failed");
  // The key is given (its chain is checked separately), so KeyInfo is never used to find one.
  EVP_PKEY* pkey = const_cast<EVP_PKEY*>(&key);
  if (EVP_PKEY_up_ref(pkey) != 1)
    return absl::InternalError("EVP_PKEY_up_ref failed");
  SecKeyDataPtr data(xmlSecOpenSSLEvpKeyAdopt(pkey));
  if (data == nullptr) {
    EVP_PKEY_free(pkey);
    return absl::InternalError("xmlSecOpenSSLEvpKeyAdopt failed");
  }
  SecKeyPtr seckey(xmlSecKeyCreate());
  if (seckey == nullptr || xmlSecKeySetValue(seckey.get(), data.get()) < 0) {
    return absl::InternalError("xmlSecKeySetValue failed");
  }
  data.release();                   // owned by seckey
  ctx->signKey = seckey.release();  // owned by ctx
  // Only what NVIDIA's RIMs use (spec §5): the whole document, enveloped, C14N 1.1 (or 1.0
  // inclusive / exclusive), SHA-384, ECDSA-SHA384.
  ctx->enabledReferenceUris = xmlSecTransformUriTypeEmpty;
  for (xmlSecTransformId id :
       {xmlSecTransformEnvelopedId, xmlSecTransformInclC14N11Id, xmlSecTransformInclC14NId,
        xmlSecTransformExclC14NId, xmlSecTransformSha384Id}) {
    if (xmlSecDSigCtxEnableReferenceTransform(ctx.get(), id) < 0) {
      return absl::InternalError("xmlSecDSigCtxEnableReferenceTransform failed");
    }
  }
  for (xmlSecTransformId id : {xmlSecTransformInclC14N11Id, xmlSecTransformInclC14NId,
                               xmlSecTransformExclC14NId, xmlSecTransformEcdsaSha384Id}) {
    if (xmlSecDSigCtxEnableSignatureTransform(ctx.get(), id) < 0) {
      return absl::InternalError("xmlSecDSigCtxEnableSignatureTransform failed");
    }
  }
  crypto::ClearOpensslErrors();
  if (xmlSecDSigCtxVerify(ctx.get(), const_cast<xmlNode*>(sig_node)) < 0) {
    crypto::ClearOpensslErrors();
    return InvalidSignature("signature could not be processed (unexpected structure or algorithm)");
  }
  crypto::ClearOpensslErrors();
  if (xmlSecPtrListGetSize(&ctx->signedInfoReferences) != 1) {
    return InvalidSignature("SignedInfo must hold exactly one Reference");
  }
  if (ctx->status != xmlSecDSigStatusSucceeded) {
    return InvalidSignature("digest or signature value does not verify");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Rim> ParseRim(absl::string_view xml) {
  PML_ASSIGN_OR_RETURN(XmlDocPtr doc, ParseXml(xml));
  const xmlNode* root = xmlDocGetRootElement(doc.get());
  if (!IsElement(root, "SoftwareIdentity", kSwidNs)) {
    return RimMalformed("root is not a SWID SoftwareIdentity");
  }
  Rim rim;
  rim.xml = std::string(xml);
  rim.sha256 = crypto::Sha256(xml);
  rim.tag_id = Attr(root, "tagId").value_or("");
  rim.product = Attr(root, "name").value_or("");
  PML_ASSIGN_OR_RETURN(const xmlNode* meta, OneChild(root, "Meta", kSwidNs));
  auto version = Attr(meta, "colloquialVersion");
  if (!version.has_value() || version->empty())
    return RimMalformed("Meta has no colloquialVersion");
  rim.colloquial_version = *version;
  rim.firmware_manufacturer_id = Attr(meta, "FirmwareManufacturerId").value_or("");
  PML_ASSIGN_OR_RETURN(const xmlNode* payload, OneChild(root, "Payload", kSwidNs));
  for (const xmlNode* res : Children(payload, "Resource", kSwidNs)) {
    auto type = Attr(res, "type");
    if (!type.has_value() || *type != "Measurement")
      continue;
    PML_ASSIGN_OR_RETURN(RimMeasurement m, ParseResource(res));
    for (const auto& prev : rim.measurements) {
      if (prev.index == m.index)
        return RimMalformed(absl::StrCat("Resource index ", m.index, " repeats"));
    }
    rim.measurements.push_back(std::move(m));
  }
  if (rim.measurements.empty())
    return RimMalformed("Payload has no Measurement resources");
  return rim;
}

absl::StatusOr<RimSignature> VerifyRim(const Rim& rim, const X509& rim_root) {
  PML_ASSIGN_OR_RETURN(XmlDocPtr doc, ParseXml(rim.xml));
  const xmlNode* root = xmlDocGetRootElement(doc.get());
  PML_ASSIGN_OR_RETURN(const xmlNode* sig, SignatureNode(root));
  PML_ASSIGN_OR_RETURN(std::vector<crypto::X509Ptr> certs, KeyInfoCertificates(sig));
  PML_ASSIGN_OR_RETURN(size_t signer, SignerIndex(certs));
  std::swap(certs[0], certs[signer]);
  auto key = crypto::CertificatePublicKey(*certs[0]);
  if (!key.ok())
    return RimMalformed("signer certificate key does not decode");
  PML_RETURN_IF_ERROR(VerifyXmlSignature(sig, **key));
  auto chain = crypto::VerifyChainToAnchor(certs, rim_root, {.at = std::nullopt, .strict = false});
  if (!chain.ok()) {
    return MakeError(absl::StatusCode::kFailedPrecondition, error_class::kRimChainUntrusted,
                     absl::StrCat("signer \"", crypto::SubjectCommonName(*certs[0]),
                                  "\": ", chain.status().message()));
  }
  RimSignature out;
  out.not_before = absl::InfinitePast();
  out.not_after = absl::InfiniteFuture();
  for (const auto& c : *chain) {
    auto v = crypto::CertificateValidity(*c);
    if (!v.ok())
      return RimMalformed("certificate validity does not parse");
    out.not_before = std::max(out.not_before, v->not_before);
    out.not_after = std::min(out.not_after, v->not_after);
  }
  out.chain = *std::move(chain);
  return out;
}

absl::string_view RimKindName(RimKind kind) {
  return kind == RimKind::kDriver ? "driver_rim" : "vbios_rim";
}

absl::StatusOr<MatchResult> MatchMeasurements(const Report& report, const Rim* driver,
                                              const Rim* vbios) {
  // Index 35 (0-based) is NVDEC0's measurement; NVAT skips it when NVDEC0 is disabled (spec §5).
  constexpr uint32_t kNvdecIndex = 35;
  bool skip_nvdec = false;
  if (report.FindOpaque(opaque::kNvdec0Status) != nullptr) {
    PML_ASSIGN_OR_RETURN(uint8_t nvdec, Nvdec0Status(report));
    if (nvdec != 0xAA && nvdec != 0x55) {
      return MakeError(
          absl::StatusCode::kInvalidArgument, error_class::kReportMalformed,
          absl::StrCat("NVDEC0_STATUS ", static_cast<int>(nvdec), " is neither 0xAA nor 0x55"));
    }
    skip_nvdec = nvdec == 0x55;
  }
  MatchResult out;
  struct Golden {
    const RimMeasurement* m;
    RimKind source;
  };
  std::vector<Golden> golden;
  for (auto [rim, kind] :
       {std::pair{driver, RimKind::kDriver}, std::pair{vbios, RimKind::kVbios}}) {
    if (rim == nullptr)
      continue;
    for (const auto& m : rim->measurements) {
      if (!m.active)
        continue;
      for (const auto& g : golden) {
        if (g.m->index == m.index)
          out.index_no_conflict = false;
      }
      golden.push_back({&m, kind});
    }
  }
  for (const auto& g : golden) {
    if (skip_nvdec && g.m->index == kNvdecIndex) {
      out.skipped.push_back(g.m->index);
      continue;
    }
    ++out.compared;
    const MeasurementBlock* b =
        g.m->index < 255 ? report.FindBlock(static_cast<uint8_t>(g.m->index + 1)) : nullptr;
    bool match = false;
    if (b != nullptr && b->value.size() == g.m->size) {
      for (const auto& alt : g.m->alternatives)
        match = match || alt == b->value;
    }
    if (match)
      continue;
    MeasurementMismatch mm;
    mm.index = g.m->index;
    mm.golden_size = g.m->size;
    mm.golden_value = g.m->alternatives.empty() ? std::vector<uint8_t>() : g.m->alternatives[0];
    if (b != nullptr) {
      mm.runtime_size = b->value.size();
      mm.runtime_value = b->value;
    }
    mm.source = g.source;
    out.mismatches.push_back(std::move(mm));
  }
  return out;
}

bool IsValidRimId(absl::string_view rim_id) {
  if (rim_id.empty() || rim_id.size() > 128 || rim_id == "." || rim_id == "..")
    return false;
  for (char c : rim_id) {
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) {
      return false;
    }
  }
  return true;
}

void StaticRimSource::Add(absl::string_view rim_id, std::string xml) {
  absl::MutexLock lock(&mu_);
  rims_[std::string(rim_id)] = std::move(xml);
}

absl::Status StaticRimSource::AddFile(absl::string_view rim_id, absl::string_view path) {
  PML_ASSIGN_OR_RETURN(std::string xml, core::ReadFile(path, kMaxRimBytes));
  Add(rim_id, std::move(xml));
  return absl::OkStatus();
}

absl::StatusOr<std::string> StaticRimSource::GetRim(absl::string_view rim_id) {
  absl::MutexLock lock(&mu_);
  auto it = rims_.find(rim_id);
  if (it == rims_.end()) {
    return MakeError(absl::StatusCode::kNotFound, error_class::kRimNotFound, rim_id.substr(0, 128));
  }
  return it->second;
}

absl::StatusOr<std::string> DecodeRimServiceResponse(absl::string_view json,
                                                     absl::string_view expected_id) {
  nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("id") || !j["id"].is_string() || !j.contains("rim") ||
      !j["rim"].is_string()) {
    return RimMalformed("RIM service response lacks string id / rim");
  }
  if (j["id"].get<std::string>() != expected_id) {
    return MakeError(absl::StatusCode::kFailedPrecondition, error_class::kRimIdMismatch,
                     absl::StrCat("response id \"", j["id"].get<std::string>().substr(0, 128),
                                  "\" is not \"", expected_id.substr(0, 128), "\""));
  }
  auto xml = core::Base64Decode(j["rim"].get<std::string>());
  if (!xml.ok())
    return RimMalformed("RIM service response rim is not base64");
  if (j.contains("sha256") && j["sha256"].is_string()) {
    const std::string want = absl::AsciiStrToLower(j["sha256"].get<std::string>());
    if (core::HexEncode(crypto::Sha256(*xml)) != want) {
      return RimMalformed("RIM service response sha256 does not match the rim");
    }
  }
  return core::ToString(*xml);
}

absl::StatusOr<std::string> DirectoryRimSource::GetRim(absl::string_view rim_id) {
  if (!IsValidRimId(rim_id)) {
    return MakeError(absl::StatusCode::kInvalidArgument, error_class::kRimMalformed,
                     "RIM id has characters outside [A-Za-z0-9._-]");
  }
  const std::string base = absl::StrCat(dir_, "/");
  auto xml = core::ReadFile(absl::StrCat(base, rim_id, ".xml"), kMaxRimBytes);
  if (xml.ok() || xml.status().code() != absl::StatusCode::kNotFound)
    return xml;
  for (const std::string& name :
       {absl::StrCat(rim_id, ".json"), absl::StrCat("rim-service-response_", rim_id, ".json")}) {
    auto json = core::ReadFile(base + name, kMaxRimBytes * 2);
    if (json.ok())
      return DecodeRimServiceResponse(*json, rim_id);
    if (json.status().code() != absl::StatusCode::kNotFound)
      return json.status();
  }
  return MakeError(absl::StatusCode::kNotFound, error_class::kRimNotFound, rim_id);
}

}  // namespace pml::gpu
