#!/usr/bin/env node
// Peer benchmark for bench/tdx_verify_bench.cc: times @phala/dcap-qvl (pure JS, npm) verifying
// one quote with its collateral at a fixed time, in this single Node.js thread, and prints one
// JSON line: {"peer", "version", "status", "iterations", "seconds", "per_second", "cpu_seconds",
// "per_cpu_second"} (CPU time is the process's user + system time, GC threads included, so a
// busy host skews it less than wall time).
//
// Usage: node dcap_qvl_bench.js QUOTE_BIN COLLATERAL_JSON VERIFY_AT_UNIX [MIN_SECONDS]
'use strict';

const fs = require('fs');
const { verify } = require('@phala/dcap-qvl');
const version = require('@phala/dcap-qvl/package.json').version;

function main() {
  const [quotePath, collateralPath, atText, minSecondsText] = process.argv.slice(2);
  if (!quotePath || !collateralPath || !atText) {
    console.error('usage: dcap_qvl_bench.js QUOTE_BIN COLLATERAL_JSON VERIFY_AT_UNIX [MIN_SECONDS]');
    process.exit(2);
  }
  const quote = new Uint8Array(fs.readFileSync(quotePath));
  const collateral = JSON.parse(fs.readFileSync(collateralPath, 'utf8'));
  const at = parseInt(atText, 10);
  const minSeconds = minSecondsText ? parseFloat(minSecondsText) : 2.0;

  // One checked call: the peer must accept the vector, or its rate means nothing.
  const first = verify(quote, collateral, at);
  for (let i = 0; i < 5; i++) verify(quote, collateral, at);  // JIT warm-up

  let iterations = 0;
  const cpuStart = process.cpuUsage();
  const start = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < minSeconds || iterations < 10) {
    verify(quote, collateral, at);
    iterations++;
    elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  }
  const cpu = process.cpuUsage(cpuStart);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  console.log(JSON.stringify({
    peer: '@phala/dcap-qvl',
    version,
    status: first.status,
    iterations,
    seconds: elapsed,
    per_second: iterations / elapsed,
    cpu_seconds: cpuSeconds,
    per_cpu_second: iterations / cpuSeconds,
  }));
}

main();
