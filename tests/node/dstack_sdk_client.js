// Drives pml-guest-agent's dstack sockets with the real @phala/dstack-sdk (DstackClient and the
// legacy TappdClient), nothing of ours: each call is checked with the SDK's own helpers where it
// has them (replayRtmrs) and against the quote bytes (TD report offsets,
// tdx-quote-verification.md §2.2). Prints one JSON line of findings (with the TLS key and chain,
// the DeriveKey key and chain and the attestation, which the python test checks with OpenSSL and
// python3-cryptography); exits 1 on a failed check.
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
// The private key's PKCS#8 DER, hex (compares keys whatever the PEM line layout).
function keyHex(pem) {
  return crypto.createPrivateKey(pem).export({ type: 'pkcs8', format: 'der' }).toString('hex');
}
// Checks a [leaf, CA, root] chain with node's X509Certificate (signatures, key match, CA flags).
function checkChain(resp, host) {
  assert.strictEqual(resp.certificate_chain.length, 3, 'chain is leaf, app CA, root');
  const [leaf, ca, root] = resp.certificate_chain.map((p) => new crypto.X509Certificate(p));
  assert.ok(leaf.checkPrivateKey(crypto.createPrivateKey(resp.key)), 'leaf key != private key');
  assert.ok(leaf.verify(ca.publicKey), 'leaf not signed by the app CA');
  assert.ok(ca.verify(root.publicKey), 'app CA not signed by the root');
  assert.ok(root.verify(root.publicKey), 'root not self-signed');
  assert.ok(ca.ca && root.ca && !leaf.ca);
  assert.ok(leaf.checkIssued(ca) && ca.checkIssued(root));
  if (host) {
    assert.strictEqual(leaf.checkHost(host), host, `leaf not valid for ${host}`);
  }
  return { leaf, ca, root };
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

  // getTlsKey: a fresh P-256 key and an RA-TLS leaf under the app CA (python checks the RA-TLS
  // extensions, `openssl verify` and the quote inside).
  const tlsOpts = { subject: 'app.example', altNames: ['app.example'], usageRaTls: true,
                    usageServerAuth: true };
  const tls = await client.getTlsKey(tlsOpts);
  const { leaf } = checkChain(tls, 'app.example');
  const tlsKey = crypto.createPrivateKey(tls.key);
  assert.strictEqual(tlsKey.asymmetricKeyDetails.namedCurve, 'prime256v1');
  // X509Certificate.keyUsage lists the extended key usages: serverAuth.
  assert.ok((leaf.keyUsage || []).includes('1.3.6.1.5.5.7.3.1'), `EKU ${leaf.keyUsage}`);
  assert.ok(tls.asUint8Array().length > 32);
  const tls2 = await client.getTlsKey(tlsOpts);
  assert.notStrictEqual(keyHex(tls2.key), keyHex(tls.key), 'GetTlsKey keys must be fresh');
  out.tls_key = tls.key;
  out.tls_chain = tls.certificate_chain;

  // attest: an EvidenceBundle as hex (python decodes and appraises it).
  const at = await client.attest('abcd');
  assert.match(at.attestation, /^([0-9a-f]{2})+$/);
  out.attestation = at.attestation;

  // Legacy TappdClient: tdxQuote('test') as dstack's README example, report_data = sha512(prefix:data).
  const tappd = new TappdClient(tappdSock);
  const tq = await tappd.tdxQuote('test');
  const want = crypto.createHash('sha512').update('app-data:test').digest('hex');
  assert.strictEqual(reportDataOf(tq.quote), want);
  assert.deepStrictEqual(tq.replayRtmrs(), rtmrsOf(tq.quote));
  const raw = await tappd.tdxQuote('abcd', 'raw');
  assert.ok(reportDataOf(raw.quote).endsWith(Buffer.from('abcd').toString('hex')));
  assert.ok(await tappd.isReachable());

  // Legacy TappdClient.deriveKey: deterministic per path, different across paths, chained to the
  // same app CA as getTlsKey's.
  const d1 = await tappd.deriveKey('svc', 'svc');
  const d2 = await tappd.deriveKey('svc', 'svc');
  const d3 = await tappd.deriveKey('other', 'other');
  const c1 = checkChain(d1, null);
  checkChain(d3, null);
  assert.strictEqual(keyHex(d1.key), keyHex(d2.key), 'deriveKey(svc) not stable');
  assert.notStrictEqual(keyHex(d1.key), keyHex(d3.key), 'deriveKey(svc) == deriveKey(other)');
  assert.ok(c1.leaf.subject.includes('CN=svc'), c1.leaf.subject);
  assert.strictEqual(d1.certificate_chain[1], tls.certificate_chain[1], 'different app CA');
  assert.strictEqual(d1.asUint8Array(32).length, 32);
  out.derive_svc_key = d1.key;
  out.derive_svc_chain = d1.certificate_chain;

  out.ok = true;
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.log(JSON.stringify({ ok: false, error: String(e && e.stack || e) }));
  process.exit(1);
});
