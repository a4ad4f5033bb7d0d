// Checks the PML services with @grpc/grpc-js (a client nobody here wrote) over mTLS.
// Usage: node foundation_client.js '{"pki":DIR,"targets":{name:addr},"proto_root":DIR}'
// Prints one JSON line with what it saw; the Python test asserts on it.
'use strict';
const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const cfg = JSON.parse(process.argv[2]);
const pkgDef = protoLoader.loadSync(
  ['grpc/health/v1/health.proto', 'pml/vmm/v1/vmm.proto'],
  { includeDirs: [cfg.proto_root, '/usr/include'], keepCase: true, defaults: true, enums: String });
const loaded = grpc.loadPackageDefinition(pkgDef);

function creds(role) {
  return grpc.credentials.createSsl(
    fs.readFileSync(path.join(cfg.pki, 'ca.pem')),
    fs.readFileSync(path.join(cfg.pki, `${role}.key`)),
    fs.readFileSync(path.join(cfg.pki, `${role}.pem`)));
}

function call(client, method, req) {
  return new Promise((resolve) => {
    const deadline = new Date(Date.now() + 10000);
    client[method](req, { deadline }, (err, resp) => {
      resolve(err ? { code: err.code, details: err.details } : { code: 0, resp });
    });
  });
}

(async () => {
  const out = { health: {} };
  for (const [name, addr] of Object.entries(cfg.targets)) {
    const h = new loaded.grpc.health.v1.Health(addr, creds('operator'));
    const r = await call(h, 'Check', { service: '' });
    out.health[name] = r.code === 0 ? r.resp.status : `error ${r.code} ${r.details}`;
    h.close();
  }
  const vmmAddr = cfg.targets.vmm;
  const viewer = new loaded.pml.vmm.v1.Vmm(vmmAddr, creds('viewer'));
  out.viewer_create_vm = await call(viewer, 'CreateVm', {});
  viewer.close();
  const op = new loaded.pml.vmm.v1.Vmm(vmmAddr, creds('operator'));
  out.operator_list_vms = await call(op, 'ListVms', {});
  op.close();
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
