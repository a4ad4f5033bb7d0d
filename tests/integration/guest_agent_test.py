"""pml-guest-agent's dstack sockets (issue 6, in progress) with the simulated TEE, driven by the
real @phala/dstack-sdk from npm (tests/node/dstack_sdk_client.js) and by raw HTTP: the SDK's own
checks pass (quote report data, replayRtmrs() equal to the quote's RTMRs, getKey stability, Info,
emitEvent, sign/verify, TappdClient.tdxQuote('test')); keys and identity survive an agent restart;
100 concurrent EmitEvent calls leave a log that replays exactly to RTMR3; bad input (oversized
body, half-sent request, non-hex, unknown algorithm) gets a clear error and the agent keeps
serving.

Run: PML_BUILD_DIR=build /usr/bin/python3 tests/integration/guest_agent_test.py
"""
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
NODE_DIR = os.path.join(ROOT, "tests", "node")


def http(sock_path, path, body, raw=None, timeout=20):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sock_path)
    data = body.encode() if isinstance(body, str) else body
    req = raw if raw is not None else (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode() + data
    try:
        s.sendall(req)
    except (BrokenPipeError, ConnectionResetError):
        pass
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except ConnectionResetError:
        pass
    s.close()
    head, _, payload = out.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head else 0
    return status, payload


def replay(digests):
    mr = bytes(48)
    for d in digests:
        mr = hashlib.sha384(mr + bytes.fromhex(d)).digest()
    return mr.hex()


class GuestAgentTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = harness.Stack()
        d = cls.stack.dir
        cls.compose = os.path.join(d, "app-compose.json")
        with open(cls.compose, "w") as f:
            f.write('{"name":"sdk-test","runner":"docker-compose","docker_compose_file":"x"}')
        cls.dstack = os.path.join(d, "dstack.sock")
        cls.tappd = os.path.join(d, "tappd.sock")
        cls.args = ["--tee", "simulated", "--state-dir", os.path.join(d, "agent-state"),
                    "--app-compose", cls.compose, "--dstack-socket", cls.dstack,
                    "--tappd-socket", cls.tappd, "--dev-key-provider"]
        cls.svc = cls.stack.start("guest-agent", extra_args=cls.args)

    @classmethod
    def tearDownClass(cls):
        codes = cls.stack.close()
        assert all(c == 0 for c in codes.values()), codes

    def sdk(self, phase):
        r = subprocess.run(["node", os.path.join(NODE_DIR, "dstack_sdk_client.js"), self.dstack,
                            self.tappd, phase], cwd=NODE_DIR, capture_output=True, text=True,
                           timeout=120)
        lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
        self.assertTrue(lines, r.stdout + r.stderr)
        out = json.loads(lines[-1])
        self.assertTrue(out.get("ok"), out.get("error", "") + "\n" + self.svc.log()[-3000:])
        return out

    def test_1_sdk_checks_pass_and_survive_a_restart(self):
        first = self.sdk("first")
        with open(self.compose, "rb") as f:
            self.assertEqual(first["compose_hash"], hashlib.sha256(f.read()).hexdigest())
        self.assertEqual(first["app_id"], first["compose_hash"][:40])
        self.assertEqual(self.stack.stop("guest-agent"), 0)
        os.remove(os.path.join(self.stack.dir, "guest-agent.ready"))
        type(self).svc = self.stack.start("guest-agent", extra_args=self.args)
        again = self.sdk("again")
        for k in ("key_wallet_eth", "app_id", "instance_id", "compose_hash"):
            self.assertEqual(first[k], again[k], k)

    def test_2_concurrent_emits_replay_exactly_to_rtmr3(self):
        errors = []

        def emit(i):
            st, body = http(self.dstack, "/EmitEvent",
                            json.dumps({"event": f"e{i}", "payload": f"{i:04x}"}))
            if st != 200:
                errors.append((i, st, body))
        threads = [threading.Thread(target=emit, args=(i,)) for i in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        st, body = http(self.dstack, "/GetQuote", json.dumps({"report_data": "00"}))
        self.assertEqual(st, 200, body)
        r = json.loads(body)
        log = json.loads(r["event_log"])
        self.assertEqual(sum(1 for e in log if e["event"].startswith("e")
                             and e["event"][1:].isdigit()), 100)
        quote = bytes.fromhex(r["quote"])
        rtmr3 = quote[48 + 472:48 + 520].hex()
        self.assertEqual(replay([e["digest"] for e in log if e["imr"] == 3]), rtmr3)
        # Each digest is dstack's SHA384(type_le32 ‖ ":" ‖ name ‖ ":" ‖ payload).
        for e in log:
            want = hashlib.sha384((0x08000001).to_bytes(4, "little") + b":" + e["event"].encode()
                                  + b":" + bytes.fromhex(e["event_payload"])).hexdigest()
            self.assertEqual(e["digest"], want, e["event"])

    def test_3_bad_input_is_refused_and_the_agent_keeps_serving(self):
        st, body = http(self.dstack, "/GetQuote", json.dumps({"report_data": "aa" * 65}))
        self.assertEqual(st, 400)
        self.assertIn("error", json.loads(body))
        st, body = http(self.dstack, "/GetQuote", json.dumps({"report_data": "xyz"}))
        self.assertEqual(st, 400)
        st, body = http(self.dstack, "/GetKey", json.dumps({"path": "a", "algorithm": "rsa"}))
        self.assertEqual(st, 400)
        self.assertIn("rsa", json.loads(body)["error"])
        st, _ = http(self.dstack, "/GetQuote", b"{" + b"a" * (10 << 20))
        self.assertEqual(st, 413)
        # Half-sent requests and a client that leaves without reading.
        for _ in range(5):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.dstack)
            s.sendall(b"POST /GetQuote HTTP/1.1\r\nContent-Length: 500\r\n\r\n{\"repo")
            s.close()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.dstack)
        s.sendall(b"POST /Info HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
        s.close()
        st, body = http(self.dstack, "/Version", "{}")
        self.assertEqual(st, 200, body)
        self.assertIsNone(self.svc.proc.poll())


if __name__ == "__main__":
    unittest.main(verbosity=2)
