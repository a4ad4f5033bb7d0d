#include "tools/pmlctl/endpoint_cmd.h"

#include <arpa/inet.h>
#include <signal.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cstdio>
#include <chrono>
#include <iostream>
#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "lib/core/hex.h"
#include "lib/core/status.h"
#include "lib/crypto/hash.h"
#include "lib/ratls/cert.h"
#include "lib/tdx/quote.h"
#include "lib/rpc/status_convert.h"
#include "google/protobuf/util/json_util.h"
#include "pml/attestation/v1/attestation.grpc.pb.h"
#include "tools/pmlctl/client_flags.h"

namespace pml::pmlctl {
namespace {

template <auto kFree>
struct Free {
  template <typename T>
  void operator()(T* p) const {
    kFree(p);
  }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, Free<SSL_CTX_free>>;
using BioAllPtr = std::unique_ptr<BIO, Free<BIO_free_all>>;

std::string OpensslError() {
  const unsigned long e = ERR_get_error();  // NOLINT(runtime/int): OpenSSL's type
  if (e == 0) return "the connection closed during the handshake (nothing speaks TLS there yet?)";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return buf;
}

bool IsIpLiteral(const std::string& h) {
  unsigned char b[16];
  return inet_pton(AF_INET, h.c_str(), b) == 1 || inet_pton(AF_INET6, h.c_str(), b) == 1;
}

std::string SpkiDer(const X509& cert) {
  const int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(&cert), nullptr);
  if (n <= 0) return {};
  std::string der(static_cast<size_t>(n), '\0');
  auto* p = reinterpret_cast<unsigned char*>(der.data());
  i2d_X509_PUBKEY(X509_get_X509_PUBKEY(&cert), &p);
  return der;
}

std::string Subject(const X509& cert) {
  char buf[512];
  X509_NAME_oneline(X509_get_subject_name(&cert), buf, sizeof(buf));
  return buf;
}

}  // namespace

absl::StatusOr<EndpointUrl> ParseEndpointUrl(absl::string_view url) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("endpoint \"", url.substr(0, 128), "\": ", why, " (want https://HOST:PORT)"));
  };
  if (!absl::ConsumePrefix(&url, "https://")) return bad("not an https:// URL");
  const size_t slash = url.find('/');
  absl::string_view authority = url.substr(0, slash);
  EndpointUrl out;
  absl::string_view port_text;
  if (absl::StartsWith(authority, "[")) {
    const size_t close = authority.find(']');
    if (close == absl::string_view::npos) return bad("unclosed [");
    out.host = std::string(authority.substr(1, close - 1));
    absl::string_view rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (!absl::ConsumePrefix(&rest, ":")) return bad("junk after ]");
      port_text = rest;
    }
  } else {
    const size_t colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != absl::string_view::npos) port_text = authority.substr(colon + 1);
  }
  if (out.host.empty() || out.host.size() > 253) return bad("no host");
  for (char c : out.host) {
    if (!(absl::ascii_isalnum(c) || c == '.' || c == '-' || c == ':')) return bad("bad host");
  }
  if (!port_text.empty()) {
    uint32_t p = 0;
    if (!absl::SimpleAtoi(port_text, &p) || p == 0 || p > 65535) return bad("bad port");
    out.port = static_cast<uint16_t>(p);
  }
  return out;
}

absl::StatusOr<std::vector<crypto::X509Ptr>> FetchPeerChain(const EndpointUrl& url,
                                                           int timeout_seconds) {
  ERR_clear_error();
  // A peer that closes mid-handshake (e.g. QEMU's port forward before the guest listens) must be
  // an error, not a SIGPIPE that kills pmlctl without a word.
  signal(SIGPIPE, SIG_IGN);
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return absl::InternalError(absl::StrCat("TLS context: ", OpensslError()));
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  // No chain verification: the server proves itself by attestation, checked after the handshake.
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  const std::string addr = absl::StrContains(url.host, ':')
                               ? absl::StrCat("[", url.host, "]:", url.port)
                               : absl::StrCat(url.host, ":", url.port);
  BioAllPtr bio(BIO_new_ssl_connect(ctx.get()));
  if (!bio) return absl::InternalError(absl::StrCat("TLS: ", OpensslError()));
  SSL* ssl = nullptr;
  BIO_get_ssl(bio.get(), &ssl);
  if (!IsIpLiteral(url.host)) SSL_set_tlsext_host_name(ssl, url.host.c_str());
  BIO_set_conn_hostname(bio.get(), addr.c_str());
  (void)timeout_seconds;  // BIO connect uses the system's TCP timeout; the server must answer
  if (BIO_do_connect(bio.get()) <= 0 || BIO_do_handshake(bio.get()) <= 0)
    return absl::UnavailableError(absl::StrCat("TLS to ", addr, ": ", OpensslError()));
  STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl);  // borrowed
  std::vector<crypto::X509Ptr> out;
  for (int i = 0; chain != nullptr && i < sk_X509_num(chain); ++i) {
    X509* c = sk_X509_value(chain, i);
    X509_up_ref(c);
    out.emplace_back(c);
  }
  if (out.empty()) return absl::UnavailableError(absl::StrCat("TLS to ", addr, ": no certificate"));
  return out;
}

absl::StatusOr<attestation::v1::AppraiseRequest> BuildEndpointAppraisal(const X509& leaf,
                                                                        absl::string_view policy_id) {
  PML_ASSIGN_OR_RETURN(ratls::RaTlsClaims claims, ratls::ParseRaTlsClaims(leaf));
  if (claims.quote.empty())
    return absl::FailedPreconditionError(
        "the server certificate carries no RA-TLS evidence (no attestation quote extension): "
        "nothing proves what runs behind it");
  // Local check first: the quote's report data must commit to this certificate's key. The
  // verifier checks the same on the verified quote.
  auto quote = tdx::ParseQuote(claims.quote);
  if (!quote.ok())
    return absl::FailedPreconditionError(
        absl::StrCat("the RA-TLS quote does not parse: ", quote.status().message()));
  if (!quote->td_report)
    return absl::FailedPreconditionError("the RA-TLS quote is not a TDX quote");
  const auto& report_data = quote->td_report->report_data;
  if (auto st = ratls::CheckBinding(leaf, report_data); !st.ok())
    return absl::FailedPreconditionError(
        absl::StrCat("the quote does not commit to this TLS key: ", st.message()));
  attestation::v1::AppraiseRequest req;
  auto* ev = req.mutable_evidence();
  ev->set_tdx_quote(std::string(claims.quote.begin(), claims.quote.end()));
  ev->set_event_log(claims.event_log);
  if (!claims.app_id.empty())
    ev->mutable_app_info()->set_app_id(std::string(claims.app_id.begin(), claims.app_id.end()));
  ev->set_report_data(std::string(report_data.begin(), report_data.end()));
  auto* b = req.mutable_binding();
  b->set_purpose(attestation::v1::REPORT_DATA_PURPOSE_RA_TLS_CERT);
  b->set_value(SpkiDer(leaf));
  req.set_policy_id(std::string(policy_id));
  req.set_omit_token(true);
  return req;
}

void AddVerifyEndpointCommand(CLI::App& verify) {
  struct Opts {
    std::string url;
    std::string policy_id;
    ClientFlags client;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = verify.add_subcommand(
      "endpoint",
      "connect to an HTTPS endpoint, read the RA-TLS evidence in its certificate (dstack's quote,\n"
      "event log and app id extensions), check that the quote commits to the certificate's key,\n"
      "and have pml-verifier (--addr) appraise it under --policy-id. Exit 0 only when allowed.");
  cmd->add_option("url", o->url, "https://HOST:PORT of the app")->required();
  cmd->add_option("--policy-id", o->policy_id, "verifier policy to appraise under")->required();
  cmd->add_flag("--json", o->json, "print the verifier's AppraiseResponse as JSON");
  AddClientFlags(*cmd, o->client);
  cmd->callback([o]() {
    auto fail = [](const absl::Status& st) -> void {
      std::cout.flush();
      std::cerr << "pmlctl verify endpoint: " << absl::StatusCodeToString(st.code()) << ": "
                << st.message() << "\n";
      throw CLI::RuntimeError{1};
    };
    auto url = ParseEndpointUrl(o->url);
    if (!url.ok()) {
      std::cerr << "pmlctl verify endpoint: " << url.status().message() << "\n";
      throw CLI::RuntimeError{2};
    }
    auto chain = FetchPeerChain(*url, static_cast<int>(o->client.timeout_seconds));
    if (!chain.ok()) fail(chain.status());
    const X509& leaf = *chain->front();
    const std::string spki = SpkiDer(leaf);
    std::cout << "endpoint:     " << o->url << "\n"
              << "certificate:  " << Subject(leaf) << " (chain of " << chain->size() << ")\n"
              << "tls key:      SPKI SHA-256 " << core::HexEncode(crypto::Sha256(spki)) << "\n";
    auto req = BuildEndpointAppraisal(leaf, o->policy_id);
    if (!req.ok()) fail(req.status());
    std::cout << "ra-tls:       quote " << req->evidence().tdx_quote().size() << " bytes, app id "
              << core::HexEncode(req->evidence().app_info().app_id()) << "\n"
              << "binding:      quote report data = SHA-512(\"ratls-cert:\" || SPKI): ok\n";
    auto channel = Connect(o->client);
    if (!channel.ok()) fail(channel.status());
    auto stub = attestation::v1::Attestation::NewStub(*channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(static_cast<int64_t>(o->client.timeout_seconds * 1000)));
    attestation::v1::AppraiseResponse resp;
    grpc::Status gs = stub->Appraise(&ctx, *req, &resp);
    if (!gs.ok()) fail(rpc::FromGrpcStatus(gs));
    if (o->json) {
      std::string text;
      google::protobuf::util::JsonPrintOptions jo;
      jo.preserve_proto_field_names = true;
      (void)google::protobuf::util::MessageToJsonString(resp, &text, jo);
      std::cout << text << "\n";
    }
    std::cout << "app:          id " << core::HexEncode(resp.app_info().app_id()) << ", compose hash "
              << core::HexEncode(resp.app_info().compose_hash()) << ", instance "
              << core::HexEncode(resp.app_info().instance_id()) << "\n"
              << "policy:       " << resp.policy_id() << " v" << resp.policy_version() << "\n";
    if (resp.simulated())
      std::cout << "WARNING: SIMULATED TEE evidence: this proves nothing about real hardware "
                   "(development only; the policy allows simulated evidence)\n";
    if (!resp.allowed()) {
      std::cout << "verdict:      REFUSED\n";
      for (const auto& f : resp.failed_checks())
        std::cout << "  failed:     " << attestation::v1::AppraisalCheck_Name(f.check()) << ": "
                  << f.detail() << "\n";
      std::cout.flush();
      throw CLI::RuntimeError{1};
    }
    std::cout << "verdict:      ALLOWED (" << attestation::v1::EarStatus_Name(resp.status()) << ")\n";
    std::cout.flush();
    throw CLI::RuntimeError{0};  // CLI11_PARSE returns it from main
  });
}

}  // namespace pml::pmlctl
