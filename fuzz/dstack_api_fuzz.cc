// libFuzzer target for the dstack HTTP/JSON API (services/guest-agent/dstack_api.h): every byte a
// container sends to dstack.sock / tappd.sock is hostile. The first input byte picks the method
// (all but /EmitEvent, whose fsync per call would make the run crawl; runtime_log_test covers its
// validation), the rest is the body. Nothing may crash, leak or read out of bounds; every answer
// is JSON (an object carrying "error" unless 200), and no input may produce a 500: bad input is
// the caller's error (4xx), never an internal one.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "lib/tee/simulator.h"
#include "services/guest-agent/agent_core.h"
#include "services/guest-agent/dstack_api.h"

namespace {

using namespace pml;  // NOLINT(google-build-using-namespace): fuzz entry point only

struct World {
  std::unique_ptr<tee::TdxSimulator> sim;
  std::unique_ptr<guest::RuntimeEventLog> log;
  std::unique_ptr<guest::LocalDevKeys> dev;
  std::unique_ptr<guest::AppKeys> keys;
  std::unique_ptr<guest::GpuSource> gpus;
  std::unique_ptr<guest::AgentCore> core;
  std::unique_ptr<guest::DstackApi> api;
};

World* Make() {
  auto* w = new World;
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("pml-dstack-fuzz-" + std::to_string(getpid())))
          .string();
  std::filesystem::create_directories(dir);
  w->sim = *tee::TdxSimulator::Create({});
  w->log = *guest::RuntimeEventLog::Open(dir + "/runtime.log", *w->sim);
  (void)w->log->Emit("app-event", {});
  guest::AgentIdentity id;
  id.app_id.assign(20, 0xa1);
  id.compose_hash.assign(32, 0xc0);
  id.tee_kind = "simulated";
  w->dev = std::make_unique<guest::LocalDevKeys>(
      *guest::MakeLocalDevKeys(crypto::SecretBytes(std::vector<uint8_t>(32, 7)), id.app_id));
  w->keys = *guest::AppKeys::Create(w->dev->app_key, {});
  w->gpus = *guest::MakeSimulatedGpus(1);
  w->core = std::make_unique<guest::AgentCore>(*w->log, *w->keys, &w->dev->ca, w->gpus.get(), id);
  w->api = std::make_unique<guest::DstackApi>(*w->core);
  return w;
}

constexpr const char* kPaths[] = {
    "/GetQuote", "/GetKey", "/GetTlsKey", "/Info", "/Sign", "/Verify", "/Version", "/Attest",
    "/prpc/Tappd.TdxQuote", "/prpc/Tappd.RawQuote", "/prpc/Tappd.DeriveKey", "/prpc/Tappd.Info",
    "/Nope"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* world = Make();
  if (size == 0)
    return 0;
  const char* path = kPaths[data[0] % (sizeof(kPaths) / sizeof(kPaths[0]))];
  const std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  guest::HttpResponse r = world->api->Handle({"POST", path, "", body});
  if (r.status == 500)
    __builtin_trap();
  nlohmann::json j = nlohmann::json::parse(r.body, nullptr, false);
  if (!j.is_object() || (r.status != 200 && !j.contains("error")))
    __builtin_trap();
  return 0;
}
