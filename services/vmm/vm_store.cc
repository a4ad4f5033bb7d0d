#include "services/vmm/vm_store.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "lib/core/status.h"
#include "services/vmm/vm_spec.h"

namespace pml::vmm {
namespace {

using store::Blob;
using store::SqlRow;
using store::SqlValue;

constexpr absl::string_view kSchema = R"sql(
CREATE TABLE IF NOT EXISTS vmm_meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS vms (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  request_id TEXT NOT NULL UNIQUE,
  state INTEGER NOT NULL,
  spec TEXT NOT NULL,
  owner TEXT NOT NULL,
  create_us INTEGER NOT NULL,
  update_us INTEGER NOT NULL,
  start_us INTEGER,
  app_id BLOB NOT NULL,
  instance_id BLOB NOT NULL,
  instance_seed BLOB NOT NULL,
  compose_hash BLOB NOT NULL,
  mrconfigid BLOB NOT NULL,
  domain_name TEXT NOT NULL,
  domain_uuid TEXT NOT NULL,
  failure_reason TEXT NOT NULL,
  create_seq INTEGER NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS gpu_claims (
  slot TEXT PRIMARY KEY,
  vm_id TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS port_claims (
  protocol INTEGER NOT NULL,
  host_port INTEGER NOT NULL,
  vm_id TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
  PRIMARY KEY (protocol, host_port)
);
)sql";

Blob B(const std::vector<uint8_t>& v) { return Blob{std::string(v.begin(), v.end())}; }
std::vector<uint8_t> V(const SqlValue& v) {
  const auto* b = std::get_if<Blob>(&v);
  return b ? std::vector<uint8_t>(b->bytes.begin(), b->bytes.end()) : std::vector<uint8_t>{};
}
std::string S(const SqlValue& v) {
  const auto* s = std::get_if<std::string>(&v);
  return s ? *s : std::string();
}
int64_t I(const SqlValue& v) {
  const auto* i = std::get_if<int64_t>(&v);
  return i ? *i : 0;
}

// Columns written by Insert/Update, in this order after id.
std::vector<SqlValue> Mutable(const VmRecord& vm) {
  return {SqlValue(static_cast<int64_t>(vm.state)),
          SqlValue(SpecToJson(vm.spec)),
          SqlValue(absl::ToUnixMicros(vm.update_time)),
          vm.start_time ? SqlValue(absl::ToUnixMicros(*vm.start_time)) : SqlValue(std::monostate{}),
          SqlValue(B(vm.app_id)),
          SqlValue(B(vm.instance_id)),
          SqlValue(B(vm.compose_hash)),
          SqlValue(B(vm.mrconfigid)),
          SqlValue(vm.domain_name),
          SqlValue(vm.domain_uuid),
          SqlValue(vm.failure_reason)};
}

}  // namespace

absl::StatusOr<std::unique_ptr<VmStore>> VmStore::Open(absl::string_view url) {
  PML_ASSIGN_OR_RETURN(std::unique_ptr<store::SqlDb> db, store::OpenSqlDb(url));
  PML_ASSIGN_OR_RETURN(store::SqlTransaction tx, store::SqlTransaction::Start(*db));
  PML_RETURN_IF_ERROR(db->Exec(kSchema));
  PML_RETURN_IF_ERROR(tx.Commit());
  return std::unique_ptr<VmStore>(new VmStore(std::move(db)));
}

absl::StatusOr<std::string> VmStore::InstanceId() {
  const std::string fresh = NewUuid();
  PML_RETURN_IF_ERROR(db_->Query("INSERT INTO vmm_meta (key, value) VALUES ('instance_id', ?) "
                                 "ON CONFLICT (key) DO NOTHING",
                                 {SqlValue(fresh)})
                          .status());
  PML_ASSIGN_OR_RETURN(auto rows,
                       db_->Query("SELECT value FROM vmm_meta WHERE key = 'instance_id'"));
  if (rows.size() != 1) return absl::DataLossError("vmm_meta has no instance_id");
  return S(rows[0][0]);
}

absl::StatusOr<std::vector<VmRecord>> VmStore::LoadAll() {
  PML_ASSIGN_OR_RETURN(
      std::vector<SqlRow> rows,
      db_->Query("SELECT id, name, request_id, state, spec, owner, create_us, update_us, start_us, "
                 "app_id, instance_id, instance_seed, compose_hash, mrconfigid, domain_name, "
                 "domain_uuid, failure_reason, create_seq FROM vms ORDER BY create_seq"));
  std::vector<VmRecord> out;
  out.reserve(rows.size());
  for (const SqlRow& r : rows) {
    VmRecord vm;
    vm.id = S(r[0]);
    vm.name = S(r[1]);
    vm.request_id = S(r[2]);
    vm.state = static_cast<VmState>(I(r[3]));
    auto spec = SpecFromJson(S(r[4]));
    if (!spec.ok()) return core::Annotate(spec.status(), absl::StrCat("VM ", vm.id));
    vm.spec = *std::move(spec);
    vm.owner = S(r[5]);
    vm.create_time = absl::FromUnixMicros(I(r[6]));
    vm.update_time = absl::FromUnixMicros(I(r[7]));
    if (std::holds_alternative<int64_t>(r[8])) vm.start_time = absl::FromUnixMicros(I(r[8]));
    vm.app_id = V(r[9]);
    vm.instance_id = V(r[10]);
    vm.instance_seed = V(r[11]);
    vm.compose_hash = V(r[12]);
    vm.mrconfigid = V(r[13]);
    vm.domain_name = S(r[14]);
    vm.domain_uuid = S(r[15]);
    vm.failure_reason = S(r[16]);
    vm.create_seq = I(r[17]);
    out.push_back(std::move(vm));
  }
  return out;
}

absl::StatusOr<Claims> VmStore::LoadClaims() {
  Claims c;
  PML_ASSIGN_OR_RETURN(auto gpus, db_->Query("SELECT slot, vm_id FROM gpu_claims ORDER BY slot"));
  for (const auto& r : gpus) c.gpus.emplace_back(S(r[0]), S(r[1]));
  PML_ASSIGN_OR_RETURN(auto ports,
                       db_->Query("SELECT protocol, host_port, vm_id FROM port_claims"));
  for (const auto& r : ports) {
    c.ports.emplace_back(PortKey{static_cast<PortProtocol>(I(r[0])), static_cast<uint16_t>(I(r[1]))},
                         S(r[2]));
  }
  return c;
}

absl::Status VmStore::WriteClaims(absl::string_view vm_id, const std::vector<std::string>& slots,
                                  const std::vector<PortKey>& ports) {
  for (const auto& s : slots) {
    PML_RETURN_IF_ERROR(db_->Query("INSERT INTO gpu_claims (slot, vm_id) VALUES (?, ?)",
                                   {SqlValue(s), SqlValue(std::string(vm_id))})
                            .status());
  }
  for (const auto& p : ports) {
    PML_RETURN_IF_ERROR(
        db_->Query("INSERT INTO port_claims (protocol, host_port, vm_id) VALUES (?, ?, ?)",
                   {SqlValue(static_cast<int64_t>(p.protocol)), SqlValue(int64_t{p.host_port}),
                    SqlValue(std::string(vm_id))})
            .status());
  }
  return absl::OkStatus();
}

absl::Status VmStore::Insert(const VmRecord& vm, const std::vector<std::string>& slots,
                             const std::vector<PortKey>& ports) {
  PML_ASSIGN_OR_RETURN(store::SqlTransaction tx, store::SqlTransaction::Start(*db_));
  std::vector<SqlValue> p = {SqlValue(vm.id), SqlValue(vm.name), SqlValue(vm.request_id),
                             SqlValue(vm.owner), SqlValue(absl::ToUnixMicros(vm.create_time)),
                             SqlValue(B(vm.instance_seed)), SqlValue(vm.create_seq)};
  for (auto& m : Mutable(vm)) p.push_back(std::move(m));
  PML_RETURN_IF_ERROR(
      db_->Query("INSERT INTO vms (id, name, request_id, owner, create_us, instance_seed, "
                 "create_seq, state, spec, update_us, start_us, app_id, instance_id, "
                 "compose_hash, mrconfigid, domain_name, domain_uuid, failure_reason) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 p)
          .status());
  PML_RETURN_IF_ERROR(WriteClaims(vm.id, slots, ports));
  return tx.Commit();
}

absl::Status VmStore::Update(const VmRecord& vm) {
  std::vector<SqlValue> p = Mutable(vm);
  p.push_back(SqlValue(vm.id));
  PML_ASSIGN_OR_RETURN(
      auto rows,
      db_->Query("UPDATE vms SET state = ?, spec = ?, update_us = ?, start_us = ?, app_id = ?, "
                 "instance_id = ?, compose_hash = ?, mrconfigid = ?, domain_name = ?, "
                 "domain_uuid = ?, failure_reason = ? WHERE id = ? RETURNING id",
                 p));
  if (rows.empty()) return absl::NotFoundError(absl::StrCat("VM ", vm.id, " is not stored"));
  return absl::OkStatus();
}

absl::Status VmStore::UpdateWithClaims(const VmRecord& vm, const std::vector<std::string>& slots,
                                       const std::vector<PortKey>& ports) {
  PML_ASSIGN_OR_RETURN(store::SqlTransaction tx, store::SqlTransaction::Start(*db_));
  PML_RETURN_IF_ERROR(Update(vm));
  PML_RETURN_IF_ERROR(db_->Query("DELETE FROM gpu_claims WHERE vm_id = ?", {SqlValue(vm.id)}).status());
  PML_RETURN_IF_ERROR(db_->Query("DELETE FROM port_claims WHERE vm_id = ?", {SqlValue(vm.id)}).status());
  PML_RETURN_IF_ERROR(WriteClaims(vm.id, slots, ports));
  return tx.Commit();
}

absl::Status VmStore::ReleaseClaims(absl::string_view vm_id) {
  PML_ASSIGN_OR_RETURN(store::SqlTransaction tx, store::SqlTransaction::Start(*db_));
  const SqlValue id{std::string(vm_id)};
  PML_RETURN_IF_ERROR(db_->Query("DELETE FROM gpu_claims WHERE vm_id = ?", {id}).status());
  PML_RETURN_IF_ERROR(db_->Query("DELETE FROM port_claims WHERE vm_id = ?", {id}).status());
  return tx.Commit();
}

absl::Status VmStore::Delete(absl::string_view vm_id) {
  PML_ASSIGN_OR_RETURN(store::SqlTransaction tx, store::SqlTransaction::Start(*db_));
  const SqlValue id{std::string(vm_id)};
  PML_RETURN_IF_ERROR(db_->Query("DELETE FROM gpu_claims WHERE vm_id = ?", {id}).status());
  PML_RETURN_IF_ERROR(db_->Query("DELETE FROM port_claims WHERE vm_id = ?", {id}).status());
  PML_RETURN_IF_ERROR(db_->Query("DELETE FROM vms WHERE id = ?", {id}).status());
  return tx.Commit();
}

}  // namespace pml::vmm
