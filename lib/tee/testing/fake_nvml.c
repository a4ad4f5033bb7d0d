/* A fake libnvidia-ml.so.1 for tests: the NVML entry points the collector resolves, with
 * behaviour chosen by environment variables so one build serves every case:
 *   PML_FAKE_NVML_CC=1        confidential computing on (default off)
 *   PML_FAKE_NVML_GPUS=N      number of GPUs (default 1)
 *   PML_FAKE_NVML_ARCH=N      NVML architecture number (default 9, Hopper)
 *   PML_FAKE_NVML_INIT_FAIL=1 nvmlInit_v2 fails
 * The "report" echoes the caller's nonce at offset 4, like a real SPDM request does. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

static int env_int(const char* name, int def) {
  const char* v = getenv(name);
  return v ? atoi(v) : def;
}
static int ready_state = 0;

int nvmlInit_v2(void) { return env_int("PML_FAKE_NVML_INIT_FAIL", 0) ? 999 : 0; }
int nvmlShutdown(void) { return 0; }
const char* nvmlErrorString(int rc) { return rc == 999 ? "Unknown Error" : rc == 4 ? "Insufficient Permissions" : "error"; }
typedef struct { unsigned environment, ccFeature, devToolsMode; } cc_state_t;
int nvmlSystemGetConfComputeState(cc_state_t* s) {
  s->environment = 2; s->ccFeature = env_int("PML_FAKE_NVML_CC", 0) ? 1 : 0; s->devToolsMode = 0; return 0;
}
typedef struct { unsigned version, environment, ccFeature, devToolsMode, multiGpuMode; } cc_settings_t;
int nvmlSystemGetConfComputeSettings(cc_settings_t* s) {
  if (s->version != (sizeof(cc_settings_t) | (1u << 24))) return 2; /* NVML_ERROR_INVALID_ARGUMENT */
  s->environment = 2; s->ccFeature = env_int("PML_FAKE_NVML_CC", 0) ? 1 : 0; s->devToolsMode = 0; s->multiGpuMode = 0;
  return 0;
}
int nvmlSystemSetConfComputeGpusReadyState(unsigned v) {
  if (env_int("PML_FAKE_NVML_NOT_ROOT", 0)) return 4;
  ready_state = (int)v; return 0;
}
int nvmlSystemGetConfComputeGpusReadyState(unsigned* v) { *v = (unsigned)ready_state; return 0; }
int nvmlSystemGetDriverVersion(char* buf, unsigned len) { snprintf(buf, len, "580.159.04"); return 0; }
int nvmlDeviceGetCount_v2(unsigned* n) { *n = (unsigned)env_int("PML_FAKE_NVML_GPUS", 1); return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned i, void** dev) { *dev = (void*)(size_t)(i + 1); return 0; }
typedef struct { unsigned certChainSize, attestationCertChainSize; unsigned char certChain[0x1000], attestationCertChain[0x1400]; } cert_t;
int nvmlDeviceGetConfComputeGpuCertificate(void* dev, cert_t* c) {
  (void)dev;
  const char* pem = "-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n";
  c->attestationCertChainSize = (unsigned)strlen(pem);
  memcpy(c->attestationCertChain, pem, strlen(pem));
  return 0;
}
typedef struct { unsigned cec, size, cecsize; unsigned char nonce[32]; unsigned char report[0x2000]; unsigned char cecreport[0x1000]; } report_t;
int nvmlDeviceGetConfComputeGpuAttestationReport(void* dev, report_t* r) {
  if (!env_int("PML_FAKE_NVML_CC", 0)) return 3; /* NVML_ERROR_NOT_SUPPORTED */
  r->size = 100;
  r->report[0] = 0x11; r->report[1] = 0xE0; r->report[2] = 1; r->report[3] = 0xFF;
  memcpy(r->report + 4, r->nonce, 32);
  r->report[99] = (unsigned char)(size_t)dev;
  return 0;
}
int nvmlDeviceGetVbiosVersion(void* dev, char* buf, unsigned len) { (void)dev; snprintf(buf, len, "96.00.9F.00.04"); return 0; }
int nvmlDeviceGetUUID(void* dev, char* buf, unsigned len) { snprintf(buf, len, "GPU-fake-%zu", (size_t)dev); return 0; }
int nvmlDeviceGetArchitecture(void* dev, unsigned* a) { (void)dev; *a = (unsigned)env_int("PML_FAKE_NVML_ARCH", 9); return 0; }
int nvmlDeviceGetBoardId(void* dev, unsigned* b) { *b = 0x100 + (unsigned)(size_t)dev; return 0; }
