#include "kaban/agent/guard.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <limits>
#include <type_traits>
#include <utility>

#include <nlohmann/json.hpp>

#include "kaban/agent/enroll.hpp"
#include "kaban/agent/error.hpp"
#include "kaban/agent/https_client.hpp"
#include "kaban/crypto/bytes.hpp"
#include "kaban/crypto/ed25519.hpp"
#include "kaban/crypto/error.hpp"
#include "kaban/protocol/messages.hpp"
#include "kaban/protocol/timestamp.hpp"

namespace kaban::agent {
namespace fs = std::filesystem;
using nlohmann::json;
namespace {

constexpr std::string_view kGuardFile = "guard.json";
constexpr std::string_view kGuardTempFile = "guard.json.tmp";
constexpr std::string_view kLockFile = "guard.lock";
// The guard holds a CA, two signed documents and a few events: kilobytes. Anything near this is
// not a guard.
constexpr std::size_t kMaxGuardFileSize = 1024 * 1024;

constexpr std::int64_t kMinute = 60;
constexpr std::int64_t kHour = 60 * kMinute;
constexpr std::int64_t kDay = 24 * kHour;

class UniqueFd {
 public:
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&&) = delete;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() {
    if (fd_ >= 0)
      ::close(fd_);
  }
  int get() const { return fd_; }
  // Closes now, so the caller can see a failed close (the last chance to hear of a lost write).
  bool close() { return ::close(std::exchange(fd_, -1)) == 0; }

 private:
  int fd_;
};

// ---- guard.json ------------------------------------------------------------------------------

// Reads one JSON object leniently about what is missing (a default) and strictly about what is
// there (a wrong type means the file is not what this agent wrote).
class FieldReader {
 public:
  explicit FieldReader(const json& object) : object_(object) {}

  void text(const char* key, std::string& out) {
    if (const json* v = find(key)) {
      if (v->is_string())
        out = v->get<std::string>();
      else
        ok_ = false;
    }
  }
  template <class Int>
  void integer(const char* key, Int& out) {
    const json* v = find(key);
    if (v == nullptr)
      return;
    if (!v->is_number_integer() ||
        (v->is_number_unsigned() &&
         v->get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<Int>::max()))) {
      ok_ = false;
      return;
    }
    const auto n = v->get<std::int64_t>();
    if (n < static_cast<std::int64_t>(std::numeric_limits<Int>::min()) ||
        (!v->is_number_unsigned() &&
         n > static_cast<std::int64_t>(std::numeric_limits<Int>::max()))) {
      ok_ = false;
      return;
    }
    out = static_cast<Int>(n);
  }
  void boolean(const char* key, bool& out) {
    if (const json* v = find(key)) {
      if (v->is_boolean())
        out = v->get<bool>();
      else
        ok_ = false;
    }
  }
  // An array or object member, nullptr if absent (a wrong type is recorded).
  const json* array(const char* key) { return typed(key, json::value_t::array); }
  const json* object(const char* key) { return typed(key, json::value_t::object); }

  void fail() { ok_ = false; }
  bool ok() const { return ok_; }

 private:
  const json* find(const char* key) const {
    const auto it = object_.find(key);
    return it == object_.end() ? nullptr : &*it;
  }
  const json* typed(const char* key, json::value_t type) {
    const json* v = find(key);
    if (v != nullptr && v->type() != type) {
      ok_ = false;
      return nullptr;
    }
    return v;
  }

  const json& object_;
  bool ok_ = true;
};

void read_signed(FieldReader& in, const char* key, protocol::SignedText& out) {
  if (const json* o = in.object(key)) {
    FieldReader r(*o);
    r.text("text", out.text);
    r.text("signature", out.signature);
    if (!r.ok())
      in.fail();
  }
}

json signed_json(const protocol::SignedText& s) {
  return {{"text", s.text}, {"signature", s.signature}};
}

Result<GuardState> state_from_json(const json& object) {
  GuardState s;
  FieldReader in(object);
  in.text("device_id", s.device_id);
  in.text("server_host", s.server_host);
  in.integer("server_port", s.server_port);
  in.text("ca_pem", s.ca_pem);
  in.text("signing_key", s.signing_key);
  in.text("report_token", s.report_token);
  read_signed(in, "policy", s.policy);
  read_signed(in, "lease", s.lease);
  if (const json* reasons = in.array("reasons")) {
    auto parsed = protocol::parse_reasons(reasons->dump());
    if (!parsed)
      return errc::storage_failed;
    s.reasons = std::move(parsed).value();
  }
  in.text("unlock_code_hash", s.unlock_code_hash);
  in.integer("last_checkin_at", s.last_checkin_at);
  in.integer("high_water", s.high_water);
  in.integer("anchor_server_time", s.anchor_server_time);
  in.text("anchor_boot_id", s.anchor_boot_id);
  in.integer("anchor_since_boot", s.anchor_since_boot);
  in.integer("rollback_seconds", s.rollback_seconds);
  in.integer("pin_failures", s.pin_failures);
  in.boolean("locked", s.locked);
  in.text("lock_reason", s.lock_reason);
  in.integer("locked_at", s.locked_at);
  in.integer("wiped_at", s.wiped_at);
  in.text("wipe_reason", s.wipe_reason);
  if (const json* events = in.array("unreported")) {
    for (const json& item : *events) {
      if (!item.is_object())
        return errc::storage_failed;
      protocol::DeviceEvent event;
      std::string kind;
      FieldReader r(item);
      r.text("kind", kind);
      r.text("reason", event.reason);
      r.integer("command_id", event.command_id);
      r.integer("at", event.at);
      const auto parsed = protocol::parse_device_event_kind(kind);
      if (!r.ok() || !parsed)
        return errc::storage_failed;
      event.kind = *parsed;
      s.unreported.push_back(std::move(event));
    }
  }
  if (!in.ok())
    return errc::storage_failed;
  return s;
}

// Writes the state's fields over `object`, so fields a newer agent added survive this one's
// read-modify-write.
void state_to_json(const GuardState& s, json& object) {
  object["device_id"] = s.device_id;
  object["server_host"] = s.server_host;
  object["server_port"] = s.server_port;
  object["ca_pem"] = s.ca_pem;
  object["signing_key"] = s.signing_key;
  object["report_token"] = s.report_token;
  object["policy"] = signed_json(s.policy);
  object["lease"] = signed_json(s.lease);
  object["reasons"] = json::parse(protocol::reasons_to_json(s.reasons));
  object["unlock_code_hash"] = s.unlock_code_hash;
  object["last_checkin_at"] = s.last_checkin_at;
  object["high_water"] = s.high_water;
  object["anchor_server_time"] = s.anchor_server_time;
  object["anchor_boot_id"] = s.anchor_boot_id;
  object["anchor_since_boot"] = s.anchor_since_boot;
  object["rollback_seconds"] = s.rollback_seconds;
  object["pin_failures"] = s.pin_failures;
  object["locked"] = s.locked;
  object["lock_reason"] = s.lock_reason;
  object["locked_at"] = s.locked_at;
  object["wiped_at"] = s.wiped_at;
  object["wipe_reason"] = s.wipe_reason;
  json events = json::array();
  for (const auto& e : s.unreported)
    events.push_back({{"kind", protocol::to_string(e.kind)},
                      {"reason", e.reason},
                      {"command_id", e.command_id},
                      {"at", e.at}});
  object["unreported"] = std::move(events);
}

// Reads the guard file into `object`: false if there is none. Anything else that goes wrong is
// storage_failed: a guard we cannot read must not mean "no rules".
Result<bool> read_guard_json(const fs::path& dir, json& object) {
  UniqueFd fd(::open((dir / kGuardFile).c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT)
      return false;
    return errc::storage_failed;
  }
  std::string text;
  std::array<char, 16 * 1024> block{};
  for (;;) {
    const ssize_t n = ::read(fd.get(), block.data(), block.size());
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return errc::storage_failed;
    if (n == 0)
      break;
    text.append(block.data(), static_cast<std::size_t>(n));
    if (text.size() > kMaxGuardFileSize)
      return errc::storage_failed;
  }
  object = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (object.is_discarded() || !object.is_object())
    return errc::storage_failed;
  return true;
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

bool sync_directory(const fs::path& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  return fd.get() >= 0 && ::fsync(fd.get()) == 0;
}

// A new file beside the old one, synced, renamed over it, and the rename synced: after a crash
// the guard is the old one or the new one, never a mix or nothing.
Result<void> write_guard_json(const fs::path& dir, std::string_view text) {
  const fs::path temp = dir / kGuardTempFile;
  UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (fd.get() < 0)
    return errc::storage_failed;
  // A temporary file left by a crash keeps its old mode through O_TRUNC.
  bool written =
      ::fchmod(fd.get(), 0600) == 0 && write_all(fd.get(), text) && ::fsync(fd.get()) == 0;
  written = fd.close() && written;
  if (!written || ::rename(temp.c_str(), (dir / kGuardFile).c_str()) != 0) {
    ::unlink(temp.c_str());
    return errc::storage_failed;
  }
  if (!sync_directory(dir))
    return errc::storage_failed;
  return ok();
}

// guard.lock is never removed: removing it would let a second process lock a new file while
// the first still holds the old one.
Result<UniqueFd> lock_guard_file(const fs::path& dir) {
  std::error_code ec;
  if (fs::create_directories(dir, ec))
    ::chmod(dir.c_str(), 0700);  // as Store::create makes it
  if (ec)
    return errc::storage_failed;
  UniqueFd fd(::open((dir / kLockFile).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (fd.get() < 0)
    return errc::storage_failed;
  while (::flock(fd.get(), LOCK_EX) != 0) {
    if (errno != EINTR)
      return errc::storage_failed;
  }
  return fd;
}

// update_guard whose change may refuse; nothing is written then.
Result<GuardState> modify_guard(const fs::path& dir,
                                const std::function<Result<void>(GuardState&)>& change) {
  const auto lock = lock_guard_file(dir);  // held until the new file is in place
  if (!lock)
    return lock.error();
  json object;
  KABAN_TRY(held, read_guard_json(dir, object));
  if (!held)
    object = json::object();
  KABAN_TRY(state, state_from_json(object));
  KABAN_TRYV(change(state));
  state_to_json(state, object);
  KABAN_TRYV(write_guard_json(dir, object.dump(2)));
  return state;
}

// ---- words -----------------------------------------------------------------------------------

std::string count_of(std::int64_t n, std::string_view unit) {
  return std::to_string(n) + " " + std::string(unit) + (n == 1 ? "" : "s");
}

// Time gone by, rounded down to its largest unit: "3 days", "5 hours", "40 minutes".
std::string elapsed_in_words(std::int64_t seconds) {
  if (seconds >= kDay)
    return count_of(seconds / kDay, "day");
  if (seconds >= kHour)
    return count_of(seconds / kHour, "hour");
  if (seconds >= kMinute)
    return count_of(seconds / kMinute, "minute");
  return "less than a minute";
}

// An allowance exactly as it was granted: "12 hours", "90 minutes", "30 days".
std::string allowance_in_words(std::int64_t seconds) {
  if (seconds > 0 && seconds % kDay == 0)
    return count_of(seconds / kDay, "day");
  if (seconds > 0 && seconds % kHour == 0)
    return count_of(seconds / kHour, "hour");
  if (seconds % kMinute == 0)
    return count_of(seconds / kMinute, "minute");
  return count_of(seconds, "second");
}

std::string wipe_reason_in_words(std::string_view reason) {
  if (reason == "command")
    return "IT asked for it";
  if (reason == "offline")
    return "it had not synced for longer than the device policy allows";
  if (reason == "verdict")
    return "the device policy required it";
  if (reason == "pin_attempts")
    return "too many wrong PINs were typed in a row";
  return "the device policy required it";
}

std::string wiped_words(const GuardState& s) {
  const std::string when = protocol::format_timestamp(s.wiped_at);
  return "Kaban's data on this device was wiped" + (when.empty() ? "" : " at " + when) +
         " because " + wipe_reason_in_words(s.wipe_reason) +
         "; nothing of it is left to open. To use Kaban here again, ask IT for a new enrollment "
         "code and run `kaban enroll`.";
}

std::string locked_words(const GuardState& s) {
  return std::string("Kaban is locked on this device (") +
         (s.lock_reason == "pin_attempts" ? "too many wrong PINs in a row" : "IT locked it") +
         "); your data is kept. Ask IT for the unlock code and run `kaban unlock`.";
}

std::string reasons_in_words(const GuardState& s) {
  std::string text;
  for (const auto& r : s.reasons) {
    if (r.action < protocol::ComplianceAction::block || r.message.empty())
      continue;
    text += (text.empty() ? "" : "; ") + r.message;
  }
  return text.empty() ? "the last sync found this device out of line with the device policy" : text;
}

// When the device last synced: the last check-in, or the lease's issue if none is recorded.
std::int64_t last_sync(const GuardState& s, const protocol::Lease& lease) {
  return s.last_checkin_at > 0 ? s.last_checkin_at : lease.issued_at;
}

// ---- verification ----------------------------------------------------------------------------

Result<crypto::Ed25519PublicKey> server_key(const GuardState& s, std::string& why) {
  if (auto raw = crypto::from_hex(s.signing_key)) {
    if (auto key = crypto::Ed25519PublicKey::from_bytes(raw.value()))
      return key.value();
  }
  why =
      "this device holds no usable server signing key, so what the server sent cannot be "
      "checked; nothing was changed. Ask IT to enroll this device again";
  return errc::policy_refused;
}

Result<void> verify_signed(const protocol::SignedText& text, const crypto::Ed25519PublicKey& key,
                           std::string_view what, std::string& why) {
  if (text.signature.empty()) {
    why = "the server sent a " + std::string(what) +
          " without a signature; nothing was changed. Sync again, and tell IT if this persists";
    return errc::policy_refused;
  }
  if (!protocol::verify_text(text, key)) {
    why = "the " + std::string(what) +
          " the server sent is not signed with the server's key (it was altered on the way or "
          "comes from elsewhere); nothing was changed. Sync again, and tell IT if this persists";
    return errc::policy_refused;
  }
  return ok();
}

Result<protocol::DevicePolicy> checked_policy(const GuardState& s,
                                              const crypto::Ed25519PublicKey& key,
                                              const protocol::SignedText& policy,
                                              std::string& why) {
  KABAN_TRYV(verify_signed(policy, key, "device policy", why));
  std::string detail;
  auto parsed = protocol::parse_device_policy_text(policy.text, &detail);
  if (!parsed) {
    why = "the device policy the server sent could not be read (" + detail +
          "); nothing was changed. Update Kaban, then sync again";
    return errc::policy_refused;
  }
  if (parsed.value().device_id != s.device_id) {
    why =
        "the server sent the device policy of another device; nothing was changed. Tell IT, "
        "then sync again";
    return errc::policy_refused;
  }
  if (!s.policy.text.empty()) {
    auto held = protocol::parse_device_policy_text(s.policy.text);
    if (held && parsed.value().version < held.value().version) {
      why = "the server sent device policy version " + std::to_string(parsed.value().version) +
            ", older than version " + std::to_string(held.value().version) +
            " this device already follows; nothing was changed. Sync again, and tell IT if this "
            "persists";
      return errc::policy_refused;
    }
  }
  return parsed;
}

Result<protocol::Lease> checked_lease(const GuardState& s, const crypto::Ed25519PublicKey& key,
                                      const protocol::SignedText& lease, std::string& why) {
  KABAN_TRYV(verify_signed(lease, key, "lease", why));
  std::string detail;
  auto parsed = protocol::parse_lease_text(lease.text, &detail);
  if (!parsed) {
    why = "the lease the server sent could not be read (" + detail +
          "); nothing was changed. Update Kaban, then sync again";
    return errc::policy_refused;
  }
  if (parsed.value().device_id != s.device_id) {
    why =
        "the server sent the lease of another device; nothing was changed. Tell IT, then sync "
        "again";
    return errc::policy_refused;
  }
  if (const auto held = current_lease(s); held && parsed.value().issued_at < held->issued_at) {
    why = "the server sent a lease issued at " +
          protocol::format_timestamp(parsed.value().issued_at) + ", older than the one held (" +
          protocol::format_timestamp(held->issued_at) +
          "); nothing was changed. Sync again, and tell IT if this persists";
    return errc::policy_refused;
  }
  return parsed;
}

// ---- lock and wipe ---------------------------------------------------------------------------

// Whether the same event (kind, reason, command) is already waiting to be reported.
bool queued(const GuardState& s, const protocol::DeviceEvent& event) {
  return std::any_of(s.unreported.begin(), s.unreported.end(), [&](const auto& e) {
    return e.kind == event.kind && e.reason == event.reason && e.command_id == event.command_id;
  });
}

void mark_locked(GuardState& s, std::string_view reason, std::int64_t command_id, std::int64_t at) {
  const protocol::DeviceEvent event{protocol::DeviceEventKind::locked, std::string(reason),
                                    command_id, at};
  if (!s.locked) {
    s.locked = true;
    s.lock_reason = std::string(reason);
    s.locked_at = at;
    s.unreported.push_back(event);
    return;
  }
  // Already locked: IT's lock command is still reported, so the server learns it was done.
  if (command_id != 0 && !queued(s, event))
    s.unreported.push_back(event);
}

void mark_wiped(GuardState& s, std::string_view reason, std::int64_t command_id, std::int64_t at) {
  if (s.wiped_at > 0)
    return;  // the first wipe is the one reported
  s.wiped_at = at;
  s.wipe_reason = std::string(reason);
  s.unreported.push_back({protocol::DeviceEventKind::wiped, std::string(reason), command_id, at});
}

std::error_code wipe_incomplete(const fs::path& dir, std::string& why) {
  why =
      "Kaban's data on this device must be wiped, but the wipe could not be completed; nothing "
      "can be opened. Check the free space and permissions of " +
      dir.string() + ", then run Kaban again to finish it";
  return errc::device_wiped;
}

// A wipe that was recorded: finishes the erase if it was cut short, then says what happened.
std::error_code refuse_wiped(const fs::path& dir, std::string& why) {
  if (Store::exists(dir) && !erase_store(dir))
    return wipe_incomplete(dir, why);
  auto state = load_guard(dir);
  if (!state)
    return wipe_incomplete(dir, why);
  why = wiped_words(state.value());
  return errc::device_wiped;
}

}  // namespace

std::string_view to_string(Access access) noexcept {
  switch (access) {
    case Access::open:
      return "open";
    case Access::policy_blocked:
      return "policy_blocked";
    case Access::offline_blocked:
      return "offline_blocked";
    case Access::wipe_due:
      return "wipe_due";
    case Access::locked:
      return "locked";
    case Access::wiped:
      return "wiped";
  }
  return "unknown";
}

Result<GuardState> load_guard(const fs::path& store_dir) {
  json object;
  KABAN_TRY(held, read_guard_json(store_dir, object));
  if (!held)
    return GuardState{};
  return state_from_json(object);
}

Result<GuardState> update_guard(const fs::path& store_dir,
                                const std::function<void(GuardState&)>& change) {
  return modify_guard(store_dir, [&](GuardState& s) -> Result<void> {
    change(s);
    return ok();
  });
}

std::int64_t trusted_time(GuardState& state, const ClockReading& now) {
  std::int64_t t = std::max(now.wall, state.high_water);
  // Boot time cannot be set by the person, so within one boot it carries the server's time
  // forward whatever the wall clock says. A new boot id (or none) breaks that chain; then the
  // high-water mark is the floor.
  if (state.anchor_server_time > 0 && !now.boot_id.empty() && now.boot_id == state.anchor_boot_id &&
      now.since_boot >= state.anchor_since_boot)
    t = std::max(t, state.anchor_server_time + (now.since_boot - state.anchor_since_boot));
  state.high_water = t;
  if (t - now.wall > kClockTolerance)
    state.rollback_seconds = std::max(state.rollback_seconds, t - now.wall);
  return t;
}

protocol::Policy current_policy(const GuardState& state) {
  if (state.policy.text.empty())
    return {};
  auto parsed = protocol::parse_device_policy_text(state.policy.text);
  return parsed ? parsed.value().settings : protocol::Policy{};
}

std::optional<protocol::Lease> current_lease(const GuardState& state) {
  if (state.lease.text.empty())
    return std::nullopt;
  auto parsed = protocol::parse_lease_text(state.lease.text);
  if (!parsed)
    return std::nullopt;
  return parsed.value();
}

Access access_at(const GuardState& state, std::int64_t now) {
  if (state.wiped_at > 0)
    return Access::wiped;
  if (state.locked)
    return Access::locked;
  const auto lease = current_lease(state);
  if (!lease)
    return Access::open;
  if (lease->verdict == protocol::Verdict::wipe ||
      (lease->wipe_after > 0 && now >= lease->wipe_after))
    return Access::wipe_due;
  if (lease->verdict == protocol::Verdict::blocked)
    return Access::policy_blocked;
  if (lease->block_after > 0 && now >= lease->block_after)
    return Access::offline_blocked;
  return Access::open;
}

Result<void> check_access(const GuardState& state, Purpose purpose, std::int64_t now,
                          std::string& why) {
  const Access access = access_at(state, now);
  switch (access) {
    case Access::open:
      return ok();
    case Access::wiped:
      why = wiped_words(state);
      return errc::device_wiped;
    case Access::locked:
      why = locked_words(state);
      return errc::device_locked;
    case Access::wipe_due: {
      const auto lease = current_lease(state);
      const std::string cause =
          lease && lease->verdict != protocol::Verdict::wipe
              ? "it last synced " + elapsed_in_words(now - last_sync(state, *lease)) +
                    " ago and the policy allows " +
                    allowance_in_words(lease->wipe_after - lease->issued_at) +
                    " offline before the data is wiped"
              : "the device policy requires it (" + reasons_in_words(state) + ")";
      why = "Kaban's data on this device must be wiped: " + cause +
            ". It is erased the next time Kaban opens the store; to use Kaban here again, ask IT "
            "for a new enrollment code.";
      return errc::device_wiped;
    }
    case Access::policy_blocked:
      if (purpose != Purpose::content)
        return ok();
      why = "Kaban is blocked on this device by the device policy: " + reasons_in_words(state) +
            ". Your data is kept, but only messages from IT can be read until a sync finds the "
            "device compliant: fix this, then run `kaban sync`.";
      return errc::access_blocked;
    case Access::offline_blocked: {
      if (purpose == Purpose::sync)
        return ok();
      const auto lease = current_lease(state);
      why = "Kaban is blocked on this device: it last synced " +
            elapsed_in_words(now - last_sync(state, *lease)) + " ago and the policy allows " +
            allowance_in_words(lease->block_after - lease->issued_at) +
            " offline. Your data is kept; run `kaban sync` with a network.";
      return errc::access_blocked;
    }
  }
  return ok();
}

Result<void> accept_checkin(GuardState& state, const protocol::SignedText& policy,
                            const protocol::SignedText& lease,
                            const std::vector<protocol::ComplianceReason>& reasons,
                            const std::string& unlock_code_hash, const ClockReading& now,
                            std::string& why) {
  KABAN_TRY(key, server_key(state, why));
  KABAN_TRYV(checked_policy(state, key, policy, why));
  KABAN_TRY(accepted_lease, checked_lease(state, key, lease, why));
  state.policy = policy;
  state.lease = lease;
  state.reasons = reasons;
  state.unlock_code_hash = unlock_code_hash;
  state.last_checkin_at = accepted_lease.issued_at;
  state.anchor_server_time = accepted_lease.issued_at;
  state.anchor_boot_id = now.boot_id;
  state.anchor_since_boot = now.since_boot;
  // The server's signed time replaces the device's estimate, also downwards: a wall clock once
  // set ahead must not leave the high-water mark (and so every lease) in the future for good.
  state.high_water = accepted_lease.issued_at;
  state.rollback_seconds = 0;
  return ok();
}

Result<void> accept_policy(GuardState& state, const protocol::SignedText& policy,
                           std::string& why) {
  KABAN_TRY(key, server_key(state, why));
  KABAN_TRYV(checked_policy(state, key, policy, why));
  state.policy = policy;
  return ok();
}

Result<Store> open_guarded(const fs::path& store_dir, std::string_view pin, const ClockReading& now,
                           std::string& why) {
  why.clear();
  {
    KABAN_TRY(held, load_guard(store_dir));
    if (held.wiped_at > 0)
      return refuse_wiped(store_dir, why);
  }
  // Checked before the guard is written, so that asking about a directory without a store
  // does not create one.
  if (!Store::exists(store_dir))
    return errc::no_store;

  // The attempt is counted before the PIN is tried and uncounted only once the answer is
  // known: killing the process while the PIN is checked cannot save an attempt.
  std::int64_t at = 0;
  Access access = Access::open;
  const auto count_attempt = [&](GuardState& s) {
    at = trusted_time(s, now);
    access = access_at(s, at);
    if (access != Access::wiped && access != Access::wipe_due && access != Access::locked)
      ++s.pin_failures;
  };
  KABAN_TRY(state, update_guard(store_dir, count_attempt));
  switch (access) {
    case Access::wiped:
      return refuse_wiped(store_dir, why);
    case Access::wipe_due: {
      const auto lease = current_lease(state);
      const char* reason =
          lease && lease->verdict == protocol::Verdict::wipe ? "verdict" : "offline";
      if (!wipe_device(store_dir, reason, 0, at))
        return wipe_incomplete(store_dir, why);
      return refuse_wiped(store_dir, why);
    }
    case Access::locked:
      why = locked_words(state);
      return errc::device_locked;
    case Access::open:
    case Access::policy_blocked:
    case Access::offline_blocked:
      break;
  }

  auto store = Store::open(store_dir, pin);
  if (store) {
    const auto reset = [](GuardState& s) { s.pin_failures = 0; };
    KABAN_TRYV(update_guard(store_dir, reset));
    return store;
  }
  if (store.error() != crypto::errc::wrong_key) {
    // Not an answer about the PIN (no store, damage, I/O): the attempt does not count.
    const auto uncount = [](GuardState& s) { s.pin_failures = std::max(0, s.pin_failures - 1); };
    (void)update_guard(store_dir, uncount);
    return store.error();
  }

  const protocol::Policy policy = current_policy(state);
  const int failures = state.pin_failures;
  if (failures < policy.pin_max_attempts) {
    const int left = policy.pin_max_attempts - failures;
    why = "wrong PIN; nothing was changed. Try again: " + count_of(left, "attempt") +
          " left before Kaban " +
          (policy.pin_failure_action == protocol::PinFailureAction::lock
               ? "is locked on this device"
               : "wipes its data on this device");
    return errc::wrong_pin;
  }
  const std::string count = count_of(failures, "wrong PIN");
  if (policy.pin_failure_action == protocol::PinFailureAction::lock) {
    KABAN_TRYV(lock_device(store_dir, "pin_attempts", 0, at));
    why = count +
          " in a row: Kaban is now locked on this device; your data is kept. Ask IT for "
          "the unlock code and run `kaban unlock`.";
    return errc::device_locked;
  }
  if (!wipe_device(store_dir, "pin_attempts", 0, at))
    return wipe_incomplete(store_dir, why);
  why = count +
        " in a row: Kaban's data on this device was wiped, as the device policy "
        "requires. To use Kaban here again, ask IT for a new enrollment code.";
  return errc::device_wiped;
}

Result<void> lock_device(const fs::path& store_dir, std::string_view reason,
                         std::int64_t command_id, std::int64_t at) {
  const auto lock = [&](GuardState& s) { mark_locked(s, reason, command_id, at); };
  KABAN_TRYV(update_guard(store_dir, lock));
  return ok();
}

Result<void> unlock_device(const fs::path& store_dir, std::string_view code, std::int64_t at,
                           std::string& why) {
  auto updated = modify_guard(store_dir, [&](GuardState& s) -> Result<void> {
    if (!s.locked) {
      why = "this device is not locked; nothing was changed";
      return errc::not_allowed;
    }
    if (s.unlock_code_hash.empty()) {
      why =
          "this device holds no unlock code yet (it gets one at its next sync after IT makes "
          "one); nothing was changed. Ask IT";
      return errc::invalid_input;
    }
    const std::string typed = protocol::unlock_code_hash(code);
    if (!crypto::constant_time_equal(crypto::as_bytes(typed),
                                     crypto::as_bytes(s.unlock_code_hash))) {
      why =
          "that is not the unlock code IT gave for this device; it stays locked. Check the code "
          "with IT and try again";
      return errc::invalid_input;
    }
    s.locked = false;
    s.lock_reason.clear();
    s.locked_at = 0;
    s.pin_failures = 0;
    s.unreported.push_back({protocol::DeviceEventKind::unlocked, "unlock_code", 0, at});
    return ok();
  });
  if (!updated)
    return updated.error();
  return ok();
}

Result<void> record_wipe(const fs::path& store_dir, std::string_view reason,
                         std::int64_t command_id, std::int64_t at) {
  const auto mark = [&](GuardState& s) { mark_wiped(s, reason, command_id, at); };
  KABAN_TRYV(update_guard(store_dir, mark));
  return ok();
}

Result<void> erase_store(const fs::path& store_dir) {
  KABAN_TRYV(Store::wipe(store_dir));
  // What reports the wipe stays: the device id, the server, its CA, the report token, the
  // wipe's time and reason, and the events not yet reported.
  const auto forget = [](GuardState& s) {
    s.policy = {};
    s.lease = {};
    s.reasons.clear();
    s.unlock_code_hash.clear();
    s.pin_failures = 0;
  };
  KABAN_TRYV(update_guard(store_dir, forget));
  return ok();
}

Result<void> wipe_device(const fs::path& store_dir, std::string_view reason,
                         std::int64_t command_id, std::int64_t at) {
  KABAN_TRYV(record_wipe(store_dir, reason, command_id, at));
  return erase_store(store_dir);
}

std::vector<protocol::DeviceEventsRequest> device_event_requests(const GuardState& state) {
  std::vector<protocol::DeviceEventsRequest> requests;
  for (std::size_t i = 0; i < state.unreported.size(); i += protocol::kMaxDeviceEvents) {
    const std::size_t end = std::min(state.unreported.size(), i + protocol::kMaxDeviceEvents);
    protocol::DeviceEventsRequest request;
    request.device_id = state.device_id;
    request.report_token = state.report_token;
    request.events.assign(state.unreported.begin() + static_cast<std::ptrdiff_t>(i),
                          state.unreported.begin() + static_cast<std::ptrdiff_t>(end));
    requests.push_back(std::move(request));
  }
  return requests;
}

Result<std::size_t> report_device_events(const fs::path& store_dir, const ReportOptions& options,
                                         std::string& why) {
  KABAN_TRY(state, load_guard(store_dir));
  if (state.unreported.empty())
    return std::size_t{0};
  if (state.device_id.empty() || state.report_token.empty() || state.server_host.empty() ||
      state.ca_pem.empty()) {
    why =
        "this device was enrolled by an older Kaban and cannot report to IT what happened on it; "
        "the events stay recorded on the device. Tell IT";
    return errc::not_enrolled;
  }

  HttpsClientConfig config;
  config.host = state.server_host;
  config.port = state.server_port;
  config.connect_timeout = options.connect_timeout;
  config.request_timeout = options.request_timeout;
  config.max_response_body = protocol::kMaxJsonResponseSize;
  config.user_agent = user_agent();
  crypto::TlsClientTrust trust;
  trust.ca_pem = state.ca_pem;
  // No client certificate: a wiped device has none left, and the report token is what proves
  // the events come from this device.
  HttpsClient client(std::move(config), std::move(trust), std::nullopt);

  std::size_t sent = 0;
  for (const auto& request : device_event_requests(state)) {
    auto response = client.request("POST", "/v1/device-events", protocol::to_json(request));
    if (!response) {
      why = client.describe_last_failure();
      return response.error();
    }
    if (response.value().status != 200) {
      why = refusal_message(response.value()) +
            "; the events stay recorded on the device and are sent again at the next sync";
      return errc::server_refused;
    }
    const auto drop_sent = [&](GuardState& s) {
      for (const auto& event : request.events) {
        if (const auto it = std::find(s.unreported.begin(), s.unreported.end(), event);
            it != s.unreported.end())
          s.unreported.erase(it);
      }
    };
    KABAN_TRYV(update_guard(store_dir, drop_sent));
    sent += request.events.size();
  }
  return sent;
}

bool pin_needed(const protocol::Policy& policy, std::int64_t last_activity, std::int64_t now) {
  if (policy.pin_idle_minutes <= 0 || now < last_activity)
    return true;
  return now - last_activity > static_cast<std::int64_t>(policy.pin_idle_minutes) * kMinute;
}

}  // namespace kaban::agent
