// Device policy end to end: the real server (in this process, on 127.0.0.1 port 0) and the real
// agent library over real TLS, with IT acting through the same admin functions `kaban-server
// admin` calls. Verdicts and what a blocked device still receives, groups and course assignment,
// certificate renewal and revocation at the TLS layer, IT's wipe and lock and their
// acknowledgement, the lease the agent obeys offline, the audit log and the compliance report;
// and the `kaban` binary telling a blocked person why.
#include <SQLiteCpp/Database.h>
#include <gtest/gtest.h>

#include <sstream>
#include <thread>

#include "kaban/agent/device_identity.hpp"
#include "kaban/agent/enroll.hpp"
#include "kaban/agent/error.hpp"
#include "kaban/agent/guard.hpp"
#include "kaban/agent/https_client.hpp"
#include "kaban/agent/library.hpp"
#include "kaban/agent/messages.hpp"
#include "kaban/agent/platform.hpp"
#include "kaban/agent/store.hpp"
#include "kaban/agent/sync.hpp"
#include "kaban/crypto/x509.hpp"
#include "kaban/protocol/enrollment_line.hpp"
#include "kaban/server/admin.hpp"
#include "kaban/server/database.hpp"
#include "kaban/server/directory.hpp"
#include "kaban/server/messaging.hpp"
#include "sync_support.hpp"
#include "test_support.hpp"

namespace kaban {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::kTestPin;
using testing::noise;
using testing::server_now;
using testing::unix_now;
using testing::write_text;

// One enrolled device, opened the way the CLI opens it: through the guard.
struct Device : testing::TestDevice {
  std::vector<std::string> course_ids() {
    agent::Library library(*store);
    auto courses = library.courses();
    EXPECT_TRUE(courses);
    std::vector<std::string> ids;
    for (const auto& c : courses.value())
      ids.push_back(c.id);
    return ids;
  }

  // A request with this device's certificate, for what the agent itself would not ask.
  Result<agent::HttpsResponse> raw_get(const std::string& target) {
    return testing::device_client(*store).request("GET", target);
  }
};

class Policy : public testing::ServerFixture {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(ServerFixture::SetUp());
    add_user("aiko", "Aiko Tanaka");
    add_user("ken", "Ken Sato");
    publish_course("shelter-basics", "Opening a shelter");
  }

  // A course of one lesson; `padding` bytes of noise make it as big as a test needs.
  void publish_course(const std::string& id, const std::string& title, std::size_t padding = 0) {
    const fs::path dir = tmp_.path() / ("course-" + id);
    write_text(dir / "lesson.html", "<h1>" + title + "</h1><!--" + noise(padding, 1) + "-->");
    write_text(dir / "course.json", R"({"id": ")" + id + R"(", "title": ")" + title +
                                        R"(", "lessons": [{"id": "intro", "title": "Intro",
        "kind": "html", "files": ["lesson.html"]}]})");
    publish(dir);
  }

  // A device of `login`'s, its store open.
  Device enroll(const std::string& login, const std::string& name) {
    Device d{enroll_device(login, name)};
    d.open();
    return d;
  }

  // The server's record of a device.
  server::Device server_device(const std::string& id) {
    auto db = server::open_database(server_dir_);
    EXPECT_TRUE(db);
    server::Directory directory(*db.value());
    auto found = directory.find_device(id);
    EXPECT_TRUE(found && found.value());
    return found && found.value() ? *found.value() : server::Device{};
  }
};

TEST_F(Policy, ABlockedDeviceGetsOnlyThePolicyAndMessagesFromIt) {
  Device aiko = enroll("aiko", "aiko-laptop");
  EXPECT_EQ(aiko.sync().verdict, protocol::Verdict::compliant);
  ASSERT_EQ(aiko.course_ids(), std::vector<std::string>{"shelter-basics"});

  // An agent version no build has: every device of everyone is blocked.
  set_policy(R"({"min_agent_version": {"linux": {"version": "99.0", "action": "block"}}})");
  publish_course("water-supply", "Water supply");
  admin([&](std::ostream& out, std::string& why) {
    server::Announcement a;
    a.audience = "all";
    a.body = "Update Kaban to 99.0 today.";
    return server::admin_announce(server_dir_, a, out, why);
  });
  const agent::SyncReport blocked = aiko.sync();
  EXPECT_EQ(blocked.verdict, protocol::Verdict::blocked);
  ASSERT_FALSE(blocked.reasons.empty());
  EXPECT_EQ(blocked.reasons[0].setting, "min_agent_version");
  EXPECT_NE(blocked.reasons[0].message.find("99.0"), std::string::npos)
      << blocked.reasons[0].message;
  EXPECT_EQ(blocked.new_versions, 0u) << "no course content for a blocked device";
  EXPECT_EQ(aiko.course_ids(), std::vector<std::string>{"shelter-basics"})
      << "what it holds stays, unreadable";

  // IT's message arrived and may be read; nothing else may.
  agent::Messages messages(*aiko.store, "aiko", "Aiko Tanaka");
  agent::MessageFilter from_it;
  from_it.from_it_only = true;
  auto it_messages = messages.list(from_it);
  ASSERT_TRUE(it_messages);
  ASSERT_EQ(it_messages.value().size(), 1u);
  EXPECT_EQ(it_messages.value()[0].body, "Update Kaban to 99.0 today.");
  const agent::GuardState state = aiko.guard();
  const std::int64_t now = unix_now();
  EXPECT_EQ(agent::access_at(state, now), agent::Access::policy_blocked);
  std::string why;
  EXPECT_EQ(agent::check_access(state, agent::Purpose::content, now, why).error(),
            agent::errc::access_blocked);
  EXPECT_TRUE(agent::check_access(state, agent::Purpose::it_messages, now, why)) << why;

  // The server refuses it content, whatever it asks for.
  auto changes = aiko.raw_get("/v1/changes?cursor=");
  ASSERT_TRUE(changes);
  EXPECT_EQ(changes.value().status, 403);
  EXPECT_NE(changes.value().body.find("device_blocked"), std::string::npos);
  auto db = server::open_database(server_dir_);
  ASSERT_TRUE(db);
  SQLite::Statement chunk(*db.value(), "SELECT hash FROM chunks LIMIT 1");
  ASSERT_TRUE(chunk.executeStep());
  auto got = aiko.raw_get("/v1/chunks/" + chunk.getColumn(0).getString());
  ASSERT_TRUE(got);
  EXPECT_EQ(got.value().status, 403) << "a blocked device asking for a chunk";
  EXPECT_EQ(server_device(aiko.device_id()).verdict, protocol::Verdict::blocked);

  // IT relaxes the rule: the next check-in lifts the block and content flows again.
  set_policy(R"({"min_agent_version": {"linux": {"version": "0.0.1", "action": "block"}}})");
  const agent::SyncReport lifted = aiko.sync();
  EXPECT_EQ(lifted.verdict, protocol::Verdict::compliant);
  EXPECT_EQ(aiko.course_ids(), (std::vector<std::string>{"shelter-basics", "water-supply"}));
  EXPECT_EQ(agent::access_at(aiko.guard(), unix_now()), agent::Access::open);
}

TEST_F(Policy, AWarningNamesItsReasonAndKeepsContentFlowing) {
  Device aiko = enroll("aiko", "aiko-laptop");
  set_policy(R"({"min_os_version": {"linux": {"version": "999", "action": "warn"}},
                 "require_screen_lock": true})");
  const agent::SyncReport report = aiko.sync();
  EXPECT_EQ(report.verdict, protocol::Verdict::warn);
  std::vector<std::string> settings;
  for (const auto& r : report.reasons)
    settings.push_back(r.setting);
  EXPECT_NE(std::find(settings.begin(), settings.end(), "min_os_version"), settings.end());
  // Linux cannot tell whether a screen lock is set: "unknown" is a warning, never a pass.
  EXPECT_NE(std::find(settings.begin(), settings.end(), "require_screen_lock"), settings.end());
  EXPECT_EQ(aiko.course_ids(), std::vector<std::string>{"shelter-basics"});
  EXPECT_EQ(agent::access_at(aiko.guard(), unix_now()), agent::Access::open);
}

TEST_F(Policy, TheLeaseFollowsTheOfflineSettingsAndTheAgentObeysItWithoutANetwork) {
  set_policy(R"({"offline_block_minutes": 60, "offline_wipe_days": 2})");
  Device aiko = enroll("aiko", "aiko-laptop");
  aiko.sync();
  const agent::GuardState state = aiko.guard();
  auto lease = agent::current_lease(state);
  ASSERT_TRUE(lease);
  EXPECT_EQ(lease->block_after, lease->issued_at + 60 * 60);
  EXPECT_EQ(lease->wipe_after, lease->issued_at + 2 * 86400);
  EXPECT_LE(std::abs(lease->issued_at - unix_now()), 5);
  EXPECT_EQ(agent::current_policy(state).offline_block_minutes, 60);

  // The server goes away; an hour and a bit later (by the trusted clock) content is blocked.
  server_->stop();
  aiko.close();
  ASSERT_TRUE(agent::update_guard(
      aiko.dir, [&](agent::GuardState& s) { s.high_water = lease->block_after + 1; }));
  aiko.open();
  const std::int64_t later = agent::load_guard(aiko.dir).value().high_water;
  EXPECT_EQ(agent::access_at(aiko.guard(), later), agent::Access::offline_blocked);
  std::string why;
  EXPECT_EQ(agent::check_access(aiko.guard(), agent::Purpose::content, later, why).error(),
            agent::errc::access_blocked);
  EXPECT_NE(why.find("kaban sync"), std::string::npos) << why;
  aiko.close();

  // Two days on, opening the store wipes it: envelope and database gone, the report queued.
  ASSERT_TRUE(agent::update_guard(
      aiko.dir, [&](agent::GuardState& s) { s.high_water = lease->wipe_after + 1; }));
  std::string wiped_why;
  auto opened = agent::open_guarded(aiko.dir, kTestPin, agent::read_clock_now(), wiped_why);
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error(), agent::errc::device_wiped);
  EXPECT_FALSE(agent::Store::exists(aiko.dir));
  const agent::GuardState after = aiko.guard();
  EXPECT_EQ(after.wipe_reason, "offline");
  ASSERT_EQ(after.unreported.size(), 1u);
  EXPECT_TRUE(after.policy.text.empty()) << "the wipe leaves only what reports it";
}

TEST_F(Policy, RemovingSomeoneFromAGroupRemovesTheGroupsCoursesFromTheirDevice) {
  admin([&](std::ostream& out, std::string& why) {
    return server::admin_group_add(server_dir_, "firefighters", "Firefighters", out, why);
  });
  publish_course("ladder-drill", "Ladder drill");
  const std::vector<std::string> firefighters{"firefighters"};
  admin([&](std::ostream& out, std::string& why) {
    return server::admin_course_assign(server_dir_, "ladder-drill", firefighters, out, why);
  });
  Device ken = enroll("ken", "ken-phone");
  ken.sync();
  EXPECT_EQ(ken.course_ids(), std::vector<std::string>{"shelter-basics"})
      << "not a firefighter yet";

  const std::vector<std::string> who{"ken"};
  admin([&](std::ostream& out, std::string& why) {
    return server::admin_group_members_add(server_dir_, "firefighters", who, out, why);
  });
  ken.sync();
  EXPECT_EQ(ken.course_ids(), (std::vector<std::string>{"ladder-drill", "shelter-basics"}));

  admin([&](std::ostream& out, std::string& why) {
    return server::admin_group_members_remove(server_dir_, "firefighters", who, out, why);
  });
  const agent::SyncReport report = ken.sync();
  EXPECT_EQ(report.courses_removed, std::vector<std::string>{"ladder-drill"});
  EXPECT_EQ(ken.course_ids(), std::vector<std::string>{"shelter-basics"});
  agent::Library library(*ken.store);
  EXPECT_FALSE(library.lessons("ladder-drill")) << "its lessons are gone from the store";
}

TEST_F(Policy, AGroupsPolicyIsStricterForItsMembersOnly) {
  admin([&](std::ostream& out, std::string& why) {
    return server::admin_group_add(server_dir_, "contractors", "", out, why);
  });
  const std::vector<std::string> who{"ken"};
  admin([&](std::ostream& out, std::string& why) {
    return server::admin_group_members_add(server_dir_, "contractors", who, out, why);
  });
  set_policy(R"({"allow_export": false, "offline_block_minutes": 30})", "contractors");
  Device aiko = enroll("aiko", "aiko-laptop");
  Device ken = enroll("ken", "ken-phone");
  aiko.sync();
  ken.sync();
  EXPECT_TRUE(agent::current_policy(aiko.guard()).allow_export);
  EXPECT_FALSE(agent::current_policy(ken.guard()).allow_export);
  EXPECT_EQ(agent::current_policy(ken.guard()).offline_block_minutes, 30);
  EXPECT_EQ(agent::current_policy(aiko.guard()).offline_block_minutes, 720);
}

TEST_F(Policy, ALostPhoneIsWipedAtItsNextCheckInAndSaysSo) {
  Device aiko = enroll("aiko", "aiko-phone");
  aiko.sync();
  const std::string id = aiko.device_id();
  const std::string queued = admin([&](std::ostream& out, std::string& why) {
    return server::admin_device_wipe(server_dir_, id.substr(0, 12), out, why);
  });
  std::string listing = admin([&](std::ostream& out, std::string& why) {
    return server::admin_device_list(server_dir_, server::Listing::json, out, why);
  });
  EXPECT_NE(listing.find("\"wipe\""), std::string::npos)
      << "pending until acknowledged: " << listing;

  const auto [error, sync_why] = aiko.failing_sync();
  EXPECT_EQ(error, agent::errc::device_wiped) << sync_why;
  // As the CLI does: close, acknowledge, erase.
  aiko.close();
  std::string report_why;
  auto reported = agent::report_device_events(aiko.dir, {}, report_why);
  ASSERT_TRUE(reported) << report_why;
  EXPECT_EQ(reported.value(), 1u);
  ASSERT_TRUE(agent::erase_store(aiko.dir));
  EXPECT_FALSE(agent::Store::exists(aiko.dir));
  EXPECT_FALSE(fs::exists(aiko.dir / agent::Store::kDatabaseFile));
  EXPECT_FALSE(fs::exists(aiko.dir / agent::Store::kEnvelopeFile));
  EXPECT_TRUE(aiko.guard().unreported.empty());

  const server::Device record = server_device(id);
  EXPECT_NE(record.wiped_at, 0);
  EXPECT_EQ(record.wipe_reason, "command");
  listing = admin([&](std::ostream& out, std::string& why) {
    return server::admin_device_list(server_dir_, server::Listing::json, out, why);
  });
  EXPECT_EQ(listing.find("\"pending\""), std::string::npos) << listing;
  std::string open_why;
  auto again = agent::open_guarded(aiko.dir, kTestPin, agent::read_clock_now(), open_why);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), agent::errc::device_wiped);
}

TEST_F(Policy, ALockedDeviceRefusesItsPinUntilTheUnlockCodeFromIt) {
  Device aiko = enroll("aiko", "aiko-phone");
  aiko.sync();
  const std::string id = aiko.device_id();
  admin([&](std::ostream& out, std::string& why) {
    return server::admin_device_lock(server_dir_, id, out, why);
  });
  const auto [error, sync_why] = aiko.failing_sync();
  EXPECT_EQ(error, agent::errc::device_locked) << sync_why;
  aiko.close();
  std::string open_why;
  auto refused = agent::open_guarded(aiko.dir, kTestPin, agent::read_clock_now(), open_why);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), agent::errc::device_locked) << "the right PIN is not even tried";
  EXPECT_NE(server_device(id).locked_at, 0) << "the lock was acknowledged";

  const std::string shown = admin([&](std::ostream& out, std::string& why) {
    return server::admin_device_unlock(server_dir_, id, out, why);
  });
  // The code is the one XXXX-XXXX-XXXX-XXXX group on the output.
  std::string code;
  std::istringstream words(shown);
  for (std::string w; words >> w;)
    if (w.size() == 19 && w[4] == '-' && w[9] == '-' && w[14] == '-')
      code = w;
  ASSERT_FALSE(code.empty()) << shown;
  std::string unlock_why;
  EXPECT_FALSE(agent::unlock_device(aiko.dir, "AAAA-BBBB-CCCC-DDDD", unix_now(), unlock_why));
  ASSERT_TRUE(agent::unlock_device(aiko.dir, code, unix_now(), unlock_why)) << unlock_why;
  aiko.open();
  aiko.sync();
  EXPECT_EQ(server_device(id).locked_at, 0) << "the unlock was reported";
}

TEST_F(Policy, ACertificateIsRenewedAtCheckInWhenThePolicyShortensItsLife) {
  Device aiko = enroll("aiko", "aiko-laptop");
  auto before = agent::load_identity(*aiko.store);
  ASSERT_TRUE(before);
  const std::string id = before.value().device_id;
  set_policy(R"({"certificate_lifetime_days": 1})");
  const agent::SyncReport report = aiko.sync();
  EXPECT_TRUE(report.certificate_renewed);
  auto after = agent::load_identity(*aiko.store);
  ASSERT_TRUE(after);
  EXPECT_NE(after.value().certificate_pem, before.value().certificate_pem);
  EXPECT_EQ(after.value().device_id, id) << "the device id outlives its certificates";
  auto cert = crypto::Certificate::from_pem(after.value().certificate_pem);
  ASSERT_TRUE(cert);
  const auto left = cert.value().not_after() - std::chrono::system_clock::now();
  EXPECT_LE(left, std::chrono::hours(24) + std::chrono::minutes(1));
  EXPECT_FALSE(aiko.sync().certificate_renewed) << "renewed once, not at every check-in";
  EXPECT_EQ(aiko.sync().verdict, protocol::Verdict::compliant) << "the new certificate works";
}

TEST_F(Policy, ADeviceWhoseCertificateExpiredOfflineIsToldToEnrollAgain) {
  Device aiko = enroll("aiko", "aiko-laptop");
  aiko.sync();
  auto identity = agent::load_identity(*aiko.store);
  ASSERT_TRUE(identity);
  auto cert = crypto::Certificate::from_pem(identity.value().certificate_pem);
  ASSERT_TRUE(cert);
  const std::int64_t not_after =
      std::chrono::duration_cast<std::chrono::seconds>(cert.value().not_after().time_since_epoch())
          .count();
  // A month offline by the trusted clock (the wall clock of this machine is not touched).
  aiko.close();
  ASSERT_TRUE(agent::update_guard(aiko.dir,
                                  [&](agent::GuardState& s) { s.high_water = not_after + 86400; }));
  aiko.open();
  const auto [error, why] = aiko.failing_sync();
  EXPECT_EQ(error, agent::errc::certificate_expired) << why;
  EXPECT_NE(why.find("enrollment code"), std::string::npos) << why;
}

TEST_F(Policy, ARevokedDeviceIsRefusedInTheHandshakeAndOthersAreNot) {
  Device aiko = enroll("aiko", "aiko-laptop");
  Device ken = enroll("ken", "ken-phone");
  aiko.sync();
  admin([&](std::ostream& out, std::string& why) {
    return server::admin_device_revoke(server_dir_, aiko.device_id(), out, why);
  });
  const auto [error, why] = aiko.failing_sync();
  EXPECT_EQ(error, agent::errc::server_refused) << why;
  EXPECT_NE(why.find("revoked"), std::string::npos) << why;
  // Refused in the handshake, before any HTTP: the server logged a connection error naming the
  // revocation, and no request of the revoked device was answered (no 403 device_revoked).
  EXPECT_TRUE(server_logged("revoked")) << server_log();
  const std::string log = server_log();
  EXPECT_EQ(log.find("\"status\":403"), std::string::npos) << log;
  EXPECT_EQ(ken.sync().verdict, protocol::Verdict::compliant);
}

TEST_F(Policy, TheAuditLogRecordsWhatHappenedAndNoSecret) {
  auto db = server::open_database(server_dir_);
  ASSERT_TRUE(db);
  std::string code;
  {
    server::Directory directory(*db.value());
    auto made = directory.create_enroll_code("aiko", 1h, server_now());
    ASSERT_TRUE(made);
    code = made.value();
  }
  Device aiko = enroll("aiko", "aiko-laptop");
  aiko.sync();
  set_policy(R"({"pin_min_length": 8})");
  admin([&](std::ostream& out, std::string& why) {
    return server::admin_device_lock(server_dir_, aiko.device_id(), out, why);
  });
  const std::string unlock = admin([&](std::ostream& out, std::string& why) {
    return server::admin_device_unlock(server_dir_, aiko.device_id(), out, why);
  });
  // A wrong enrollment code from an address is a security event too.
  {
    const protocol::EnrollmentLine line{"127.0.0.1", port_, "AAAA-BBBB-CCCC-DDDD",
                                        identity_->ca_fingerprint};
    std::string why;
    EXPECT_FALSE(agent::request_enrollment(line, {}, why));
  }
  const std::string audit = admin([&](std::ostream& out, std::string& why) {
    return server::admin_audit(server_dir_, server::UnixTime{}, server::Listing::json, out, why);
  });
  for (const char* event :
       {"device_enrolled", "policy_set", "lock_requested", "unlock_code_shown", "enroll_failed"})
    EXPECT_NE(audit.find(event), std::string::npos) << event << " missing from " << audit;
  EXPECT_EQ(audit.find(code), std::string::npos) << "an enrollment code in the audit log";
  EXPECT_EQ(audit.find("AAAA-BBBB-CCCC-DDDD"), std::string::npos);
  for (std::istringstream words(unlock); !words.eof();) {
    std::string w;
    words >> w;
    if (w.size() == 19 && w[4] == '-') {
      EXPECT_EQ(audit.find(w), std::string::npos) << "the unlock code in the audit log";
    }
  }
  // The log is append-only.
  EXPECT_THROW(db.value()->exec("DELETE FROM audit_log"), SQLite::Exception);
  EXPECT_THROW(db.value()->exec("UPDATE audit_log SET event = 'x'"), SQLite::Exception);
}

TEST_F(Policy, TheComplianceReportListsADeviceSilentPastItsBlockWindowAsBlocked) {
  set_policy(R"({"offline_block_minutes": 60})");
  Device aiko = enroll("aiko", "aiko-laptop");
  Device ken = enroll("ken", "ken-phone");
  aiko.sync();
  ken.sync();
  // Ken's phone last checked in three hours ago, as far as the server knows.
  {
    auto db = server::open_database(server_dir_);
    ASSERT_TRUE(db);
    SQLite::Statement age(*db.value(),
                          "UPDATE devices SET last_checkin_at = last_checkin_at - 10800, "
                          "block_after = block_after - 10800 WHERE login = 'ken'");
    age.exec();
  }
  const std::string report = admin([&](std::ostream& out, std::string& why) {
    return server::admin_report_compliance(server_dir_, server::Listing::csv, out, why);
  });
  std::string aiko_line, ken_line;
  std::istringstream lines(report);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("aiko") != std::string::npos)
      aiko_line = line;
    if (line.find("ken") != std::string::npos)
      ken_line = line;
  }
  EXPECT_NE(aiko_line.find("within grace"), std::string::npos) << report;
  EXPECT_NE(ken_line.find("blocked"), std::string::npos) << report;
}

TEST_F(Policy, WifiOnlyDownloadsWaitOnACellularNetworkWhileMessagesFlow) {
  set_policy(R"({"wifi_only_downloads": true})");
  Device aiko = enroll("aiko", "aiko-phone");
  admin([&](std::ostream& out, std::string& why) {
    server::Announcement a;
    a.audience = "all";
    a.body = "Shelter 3 opens at noon.";
    return server::admin_announce(server_dir_, a, out, why);
  });
  agent::SyncOptions cellular;
  cellular.network_kind = [] { return std::string("cellular"); };
  const agent::SyncReport waiting = aiko.sync(cellular);
  EXPECT_EQ(waiting.downloads_deferred, agent::DownloadDeferral::wifi_only);
  EXPECT_GT(waiting.deferred_bytes, 0u);
  EXPECT_EQ(waiting.chunks_downloaded, 0u);
  EXPECT_EQ(waiting.messages_received, 1u) << "messages do not wait for Wi-Fi";
  EXPECT_TRUE(waiting.made_ready.empty());

  agent::SyncOptions wifi;
  wifi.network_kind = [] { return std::string("wifi"); };
  const agent::SyncReport home = aiko.sync(wifi);
  EXPECT_EQ(home.downloads_deferred, agent::DownloadDeferral::none);
  EXPECT_GT(home.chunks_downloaded, 0u);
  EXPECT_EQ(home.made_ready.size(), 1u);
}

TEST_F(Policy, DownloadsStopBeforeTheStoreOutgrowsTheCacheLimit) {
  set_policy(R"({"max_cache_mb": 2})");
  publish_course("big-video", "Big video", 3 * 1024 * 1024);
  Device aiko = enroll("aiko", "aiko-phone");
  const agent::SyncReport report = aiko.sync();
  EXPECT_EQ(report.downloads_deferred, agent::DownloadDeferral::cache_limit);
  EXPECT_EQ(report.cache_limit_bytes, 2u * 1024 * 1024);
  EXPECT_GT(report.cache_needed_bytes, report.cache_limit_bytes);
  EXPECT_LE(agent::Store::disk_size(aiko.dir), 2u * 1024 * 1024 + 64 * 1024)
      << "the store stayed about the limit (a page or so of bookkeeping over)";
  EXPECT_EQ(report.made_ready, std::vector<std::string>{"shelter-basics@1"})
      << "the small course fits; the big one waits";
}

TEST_F(Policy, TheCliWritesNoLessonFileOutWhenThePolicyForbidsExport) {
  set_policy(R"({"allow_export": false})");
  Device aiko = enroll("aiko", "aiko-laptop");
  aiko.sync();
  aiko.close();
  const fs::path exported = tmp_.path() / "exported.html";
  const testing::CliRun run = run_cli(
      KABAN_AGENT_BIN, aiko.dir, {"open", "shelter-basics/intro", "--out", exported.string()}, 30s);
  EXPECT_NE(run.code, 0);
  EXPECT_FALSE(fs::exists(exported));
  const std::string& said = run.output;
  EXPECT_NE(said.find("export"), std::string::npos) << said;
}

// The person at the CLI: a device blocked offline says why and how long since the last sync.
TEST_F(Policy, TheCliSaysWhyItIsBlockedAndSinceWhen) {
  set_policy(R"({"offline_block_minutes": 60})");
  Device aiko = enroll("aiko", "aiko-laptop");
  aiko.sync();
  aiko.close();
  const std::int64_t block_after = agent::current_lease(aiko.guard())->block_after;
  ASSERT_TRUE(agent::update_guard(
      aiko.dir, [&](agent::GuardState& s) { s.high_water = block_after + 2 * 3600; }));
  const testing::CliRun run = run_cli(KABAN_AGENT_BIN, aiko.dir, {"courses"}, 30s);
  EXPECT_NE(run.code, 0);
  const std::string& said = run.output;
  EXPECT_NE(said.find("blocked"), std::string::npos) << said;
  EXPECT_NE(said.find("3 hours"), std::string::npos) << "how long since the last sync: " << said;
  EXPECT_NE(said.find("kaban sync"), std::string::npos) << said;
}

}  // namespace
}  // namespace kaban
