"""Starts the four PML services with a development PKI and prints their health (scripts/demo.sh)."""
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
import harness  # noqa: E402


def main():
    keep = "--keep-running" in sys.argv
    print("==> DEVELOPMENT MODE: development PKI, services on 127.0.0.1 only")
    stack = harness.Stack()
    print(f"==> development PKI in {stack.pki}")
    try:
        for name in harness.SERVICES:
            svc = stack.start(name, extra_args=harness.default_args(stack, name))
            print(f"==> started pml-{name}: grpc {svc.addr}, metrics "
                  f"http://127.0.0.1:{svc.metrics_port}/metrics")
        print("==> health and version of each service (pmlctl health / pmlctl version):")
        ok = True
        for name, svc in stack.services.items():
            h = harness.pmlctl("health", "--addr", svc.addr, "--pki-dir", stack.pki, check=False)
            v = harness.pmlctl("version", "--addr", svc.addr, "--pki-dir", stack.pki, check=False)
            print(f"  pml-{name:12s} {h.stdout.strip() or h.stderr.strip()}")
            print(f"  {'':17s}{v.stdout.splitlines()[0] if v.returncode == 0 else v.stderr.strip()}")
            ok = ok and h.returncode == 0
        if keep:
            print(f"==> running; try: build/tools/pmlctl/pmlctl health --addr "
                  f"{stack.services['vmm'].addr} --pki-dir {stack.pki}   (Ctrl-C stops)")
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        codes = stack.close()
        print("==> stopped: " + ", ".join(f"pml-{n} exit {c}" for n, c in codes.items()))
    return 0 if ok else 1


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM}) if "--keep-running" in sys.argv else None
    sys.exit(main())
