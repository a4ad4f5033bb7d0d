// Drives pml-guest-agent's dstack sockets with the real @phala/dstack-sdk (DstackClient and the
// legacy TappdClient), nothing of ours: each call is checked with the SDK's own helpers where it
// has them (replayRtmrs) and against the quote bytes (TD report offsets,
// tdx-quote-verification.md §2.2). Prints one JSON line of findings; exits 1 on a failed check.
//
// node dstack_sdk_client.js DSTACK_SOCKET TAPPD_SOCKET [PHASE]   (PHASE: "first" or "again")
'use strict';
const assert = require('assert');
const crypto = require('crypto');
const { DstackClient, TappdClient } = require('@phala/dstack-sdk');

const [dstackSock, tappdSock, phase = 'first'] = process.argv.slice(2);

function rtmrsOf(quoteHex) {
  const q = Buffer.from(quoteHex, 'hex');
  const body = q.subarray(48, 48 + 584);
  return [0, 1, 2, 3].map((i) => body.subarray(328 + 48 * i, 376 + 48 * i).toString('hex'));
}
function reportDataOf(quoteHex) {
  return Buffer.from(quoteHex, 'hex').subarray(48 + 520, 48 + 584).toString('hex');
}

async function main() {
  const out = { phase };
  const client = new DstackClient(dstackSock);

  // getQuote: report data zero-padded, the log replays to the quote's RTMRs.
  const quote = await client.getQuote('hello');
  assert.strictEqual(reportDataOf(quote.quote), Buffer.from('hello').toString('hex').padEnd(128, '0'));
  assert.deepStrictEqual(quote.replayRtmrs(), rtmrsOf(quote.quote), 'replayRtmrs != quote RTMRs');
  out.quote_bytes = quote.quote.length / 2;

  // Too much report data is refused (by the SDK before sending, and by the agent for raw callers).
  await assert.rejects(client.getQuote(Buffer.alloc(65)));

  // getKey: stable per path, different across paths; two signatures in the chain.
  const k1 = await client.getKey('wallet/eth', 'signing');
  const k2 = await client.getKey('wallet/eth', 'signing');
  const k3 = await client.getKey('wallet/other', 'signing');
  assert.strictEqual(Buffer.from(k1.key).toString('hex'), Buffer.from(k2.key).toString('hex'));
  assert.notStrictEqual(Buffer.from(k1.key).toString('hex'), Buffer.from(k3.key).toString('hex'));
  assert.strictEqual(k1.key.length, 32);
  assert.strictEqual(k1.signature_chain.length, 2);
  out.key_wallet_eth = Buffer.from(k1.key).toString('hex');
  const ed = await client.getKey('ssh', 'login', 'ed25519');
  assert.strictEqual(ed.key.length, 32);

  // info: identity and tcb_info (parsed by the SDK).
  const info = await client.info();
  assert.strictEqual(info.app_id.length, 40);
  assert.strictEqual(info.tcb_info.rtmr3, rtmrsOf((await client.getQuote('')).quote)[3]);
  out.app_id = info.app_id;
  out.compose_hash = info.compose_hash;
  out.instance_id = info.instance_id;

  // emitEvent extends RTMR3 and the log still replays.
  await client.emitEvent('sdk-test', `payload-${phase}`);
  const after = await client.getQuote('after');
  assert.deepStrictEqual(after.replayRtmrs(), rtmrsOf(after.quote));
  assert.ok(JSON.parse(after.event_log).some((e) => e.event === 'sdk-test'));

  // sign / verify.
  const signed = await client.sign('ed25519', 'message');
  const verified = await client.verify('ed25519', 'message', signed.signature, signed.public_key);
  assert.strictEqual(verified.valid, true);
  const forged = await client.verify('ed25519', 'messagf', signed.signature, signed.public_key);
  assert.strictEqual(forged.valid, false);

  const version = await client.version();
  assert.ok(version.version);

  // Legacy TappdClient: tdxQuote('test') as dstack's README example, report_data = sha512(prefix:data).
  const tappd = new TappdClient(tappdSock);
  const tq = await tappd.tdxQuote('test');
  const want = crypto.createHash('sha512').update('app-data:test').digest('hex');
  assert.strictEqual(reportDataOf(tq.quote), want);
  assert.deepStrictEqual(tq.replayRtmrs(), rtmrsOf(tq.quote));
  const raw = await tappd.tdxQuote('abcd', 'raw');
  assert.ok(reportDataOf(raw.quote).endsWith(Buffer.from('abcd').toString('hex')));
  assert.ok(await tappd.isReachable());

  out.ok = true;
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.log(JSON.stringify({ ok: false, error: String(e && e.stack || e) }));
  process.exit(1);
});
