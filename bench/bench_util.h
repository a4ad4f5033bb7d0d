#pragma once
// What the benchmarks (pml-bench-*, bench/README.md) share: clocks, the nearest-rank percentile
// and mean of a sample, CPU time, a closed-loop load run over N client threads, main's
// parse-and-run and the exit path for a bench that cannot run, and a temp directory removed on
// destruction. Header-only: each bench is one executable.
//
// Thread-safety: the free functions are thread-safe (ThreadCpuSeconds reads the calling
// thread's clock); RunClosedLoop starts and joins its own threads. A TempDir is not to be shared
// between threads while it is destroyed.

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <functional>
#include <latch>
#include <numeric>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace pml::bench {

using Clock = std::chrono::steady_clock;

// Wall time since `t0`, in seconds / milliseconds.
inline double SecondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}
inline double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Nearest-rank percentile of `sorted` (ascending), q in (0, 1]; 0 for no values.
inline double Percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) {
    return 0;
  }
  size_t rank = static_cast<size_t>(q * static_cast<double>(sorted.size()) + 0.999999);
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

// Arithmetic mean; 0 for no values.
inline double Mean(const std::vector<double>& v) {
  return v.empty() ? 0 : std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

// CPU time consumed so far by the calling thread / by the whole process, in seconds.
inline double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}
inline double ProcessCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// A closed-loop load run: every call's latency and what the run cost.
struct LoadResult {
  std::vector<double> latency_us;  // sorted
  double wall_seconds = 0;
  double cpu_seconds = 0;  // the whole process: clients, servers, everything in it
  double client_cpu_seconds = 0;  // the calling threads alone (the load generator's share)

  double PerSecond() const {
    return wall_seconds > 0 ? static_cast<double>(latency_us.size()) / wall_seconds : 0;
  }
  double CpuUsPerRequest() const {
    return latency_us.empty() ? 0 : cpu_seconds * 1e6 / static_cast<double>(latency_us.size());
  }
  double ClientCpuUsPerRequest() const {
    if (client_cpu_seconds < 0)
      return -1;  // not measured
    return latency_us.empty() ? 0
                              : client_cpu_seconds * 1e6 / static_cast<double>(latency_us.size());
  }
};

struct LoadOptions {
  // Calls each thread makes first, all threads at once, before the clock starts.
  int warmup_calls = 0;
  // Latencies each thread has room for before it reallocates.
  size_t reserve_per_thread = 1 << 14;
  // Runs once every thread is warmed up, before the clock starts (untimed).
  std::function<void()> before_start;
};

// Runs calls[t] on thread t, back to back, for `seconds` of wall time (a call that starts before
// the deadline finishes), and fills `out` with every call's latency (sorted), the wall time and
// the process's CPU time from the start to the last thread's end. The first failing call stops
// the run (the other threads stop after their current call) and is returned as is; `out` is then
// incomplete. Calls on different threads run concurrently; each calls[t] only on its thread.
inline absl::Status RunClosedLoop(const std::vector<std::function<absl::Status()>>& calls,
                                  double seconds, const LoadOptions& options, LoadResult* out) {
  const int threads = static_cast<int>(calls.size());
  absl::Mutex mu;
  absl::Status first_error;  // guarded by mu
  std::atomic<bool> failed{false};
  auto fail = [&](absl::Status s) {
    absl::MutexLock lock(&mu);
    if (first_error.ok()) {
      first_error = std::move(s);
    }
    failed = true;
  };
  std::vector<std::vector<double>> per_thread(calls.size());
  std::vector<double> thread_cpu(calls.size(), 0);
  std::latch warmed(threads + 1);
  std::latch go(threads + 1);
  Clock::time_point deadline;  // written before `go` opens, read after
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::vector<double>& latencies = per_thread[t];
      latencies.reserve(options.reserve_per_thread);
      bool ok = true;
      for (int i = 0; i < options.warmup_calls && ok; ++i) {
        absl::Status s = calls[t]();
        if (!s.ok()) {
          fail(std::move(s));
          ok = false;
        }
      }
      warmed.arrive_and_wait();
      go.arrive_and_wait();
      if (!ok || failed.load()) {
        return;
      }
      const double cpu_start = ThreadCpuSeconds();
      struct Count {  // this thread's CPU from `go` to its return
        double& out;
        double start;
        ~Count() { out = ThreadCpuSeconds() - start; }
      } count{thread_cpu[t], cpu_start};
      for (;;) {
        const Clock::time_point t0 = Clock::now();
        absl::Status s = calls[t]();
        const Clock::time_point t1 = Clock::now();
        if (!s.ok()) {
          fail(std::move(s));
          return;
        }
        latencies.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        if (t1 >= deadline || failed.load(std::memory_order_relaxed)) {
          return;
        }
      }
    });
  }
  warmed.arrive_and_wait();
  if (options.before_start) {
    options.before_start();
  }
  const double cpu0 = ProcessCpuSeconds();
  const Clock::time_point start = Clock::now();
  deadline =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  go.arrive_and_wait();
  for (auto& w : workers) {
    w.join();
  }
  out->wall_seconds = SecondsSince(start);
  out->cpu_seconds = ProcessCpuSeconds() - cpu0;
  out->client_cpu_seconds = std::accumulate(thread_cpu.begin(), thread_cpu.end(), 0.0);
  {
    absl::MutexLock lock(&mu);
    if (!first_error.ok()) {
      return first_error;
    }
  }
  out->latency_us.clear();
  for (const auto& v : per_thread) {
    out->latency_us.insert(out->latency_us.end(), v.begin(), v.end());
  }
  std::sort(out->latency_us.begin(), out->latency_us.end());
  return absl::OkStatus();
}

// Prints "<program>: error: <message>" to standard error and returns 2, the exit code of a bench
// that cannot run.
inline int Fail(absl::string_view program, const absl::Status& s) {
  std::fprintf(stderr, "%s: error: %s\n", std::string(program).c_str(),
               std::string(s.message()).c_str());
  return 2;
}

// A bench's main after its options are declared on `app`: parses the command line (CLI11 prints
// --help and usage errors; exit 0 and 2) and returns run()'s exit code. An exception escaping
// run() (bad_alloc, std::system_error from std::thread) is printed as "<program>: error: ..."
// and exits 2.
template <typename Fn>
int ParseAndRun(CLI::App& app, int argc, char** argv, absl::string_view program, Fn run) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& err) {
    return app.exit(err) == 0 ? 0 : 2;
  }
  try {
    return run();
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "%s: error: %s\n", std::string(program).c_str(), ex.what());
    return 2;
  }
}

// A temp directory removed (best effort, recursively) on destruction.
class TempDir {
 public:
  // A new directory "<stem>-XXXXXX" under `parent` (the system temp directory when empty),
  // with permissions `mode` (mkdtemp's 0700 unless a caller needs others to read it).
  // kInternal when the temp directory is unknown or mkdtemp fails.
  static absl::StatusOr<TempDir> Make(const std::string& parent, absl::string_view stem,
                                      mode_t mode = 0700) {
    std::error_code ec;
    const std::filesystem::path base =
        parent.empty() ? std::filesystem::temp_directory_path(ec) : std::filesystem::path(parent);
    if (ec) {
      return absl::InternalError(absl::StrCat("temp directory: ", ec.message()));
    }
    std::string tmpl = (base / absl::StrCat(stem, "-XXXXXX")).string();
    if (mkdtemp(tmpl.data()) == nullptr) {
      return absl::InternalError(
          absl::StrCat("mkdtemp ", tmpl, ": ", std::generic_category().message(errno)));
    }
    if (mode != 0700) {
      chmod(tmpl.c_str(), mode);
    }
    return TempDir(std::move(tmpl));
  }
  TempDir(TempDir&& o) noexcept : path_(std::exchange(o.path_, "")) {}
  TempDir& operator=(TempDir&&) = delete;
  ~TempDir() {
    if (!path_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(path_, ec);  // best effort
    }
  }
  const std::string& path() const { return path_; }

 private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

}  // namespace pml::bench
