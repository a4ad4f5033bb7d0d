#!/usr/bin/env python3
"""Independent implementation of the KMS key derivations (services/kms/derive.h), written from
the formulas in that header with python3-cryptography, to produce tests/vectors/kms-derivations.json.
services/kms/derive_test.cc reads the JSON and checks the C++ derivations give the same values.

  python3 tests/vectors/gen_kms_derivations.py > tests/vectors/kms-derivations.json
"""
import hashlib
import json
import struct

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

LABEL = b"pml-kms:v1"
N_P256 = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
N_K256 = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def lp(b):
    return struct.pack(">I", len(b)) + b


def okm(ikm, purpose, app_id, epoch, instance_id, length):
    info = LABEL + lp(purpose.encode()) + lp(app_id) + struct.pack(">I", epoch) + lp(instance_id)
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=LABEL, info=info).derive(ikm)


def scalar(x, n):
    return (int.from_bytes(x, "big") % (n - 1)) + 1


def compressed(priv):
    return priv.public_key().public_bytes(serialization.Encoding.X962,
                                          serialization.PublicFormat.CompressedPoint)


def case(name, ca_root, k256_root, app_id, instance_id, epoch):
    ca = scalar(okm(ca_root, "app-ca", app_id, epoch, b"", 48), N_P256)
    ca_key = ec.derive_private_key(ca, ec.SECP256R1())
    disk = okm(ca_root, "app-disk-crypt-key", app_id, epoch, instance_id, 32) if instance_id else b""
    env = okm(ca_root, "env-encrypt-key", app_id, epoch, b"", 32)
    env_pub = x25519.X25519PrivateKey.from_private_bytes(env).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    k = scalar(okm(k256_root, "app-key", app_id, epoch, b"", 48), N_K256)
    k_key = ec.derive_private_key(k, ec.SECP256K1())
    return {
        "name": name,
        "root_ca_scalar": ca_root.hex(), "root_k256_scalar": k256_root.hex(),
        "app_id": app_id.hex(), "instance_id": instance_id.hex(), "epoch": epoch,
        "app_ca_scalar": ca.to_bytes(32, "big").hex(),
        "app_ca_public_key": compressed(ca_key).hex(),
        "disk_key": disk.hex(),
        "env_key": env.hex(), "env_public_key": env_pub.hex(),
        "k256_scalar": k.to_bytes(32, "big").hex(),
        "k256_public_key": compressed(k_key).hex(),
    }


def main():
    h = lambda s: hashlib.sha256(s.encode()).digest()
    cases = [
        case("epoch1", h("root-ca-1"), h("root-k256-1"), h("app-a")[:20], h("inst-1")[:20], 1),
        case("epoch2-same-app", h("root-ca-1"), h("root-k256-1"), h("app-a")[:20], h("inst-1")[:20], 2),
        case("other-instance", h("root-ca-1"), h("root-k256-1"), h("app-a")[:20], h("inst-2")[:20], 1),
        case("other-app-no-instance", h("root-ca-1"), h("root-k256-1"), h("app-b")[:20], b"", 1),
        case("other-root", h("root-ca-2"), h("root-k256-2"), h("app-a")[:20], h("inst-1")[:20], 7),
    ]
    print(json.dumps({"description": "KMS key derivations (services/kms/derive.h), computed by "
                      "tests/vectors/gen_kms_derivations.py with python3-cryptography",
                      "cases": cases}, indent=1))


if __name__ == "__main__":
    main()
