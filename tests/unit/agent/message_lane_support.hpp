// Shared by the outbox, messages and learning-log tests: a real encrypted store in a temp
// directory, and inbox changes as the server would send them.
#pragma once

#include <optional>
#include <string>

#include <SQLiteCpp/Database.h>
#include <gtest/gtest.h>

#include "kaban/agent/store.hpp"
#include "kaban/protocol/channel.hpp"
#include "kaban/protocol/inbox.hpp"
#include "kaban/protocol/outbox.hpp"
#include "test_support.hpp"

namespace kaban::agent::testing {

inline constexpr crypto::ScryptParams kFastKdf{1u << 10, 8, 1};
inline constexpr std::string_view kPin = "1234-5678";
inline constexpr std::int64_t kNow = 1795435200;  // 2026-11-23T09:20:00Z

class StoreFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = Store::create(dir_, kPin, kFastKdf);
    ASSERT_TRUE(store) << store.error().message();
    store_.emplace(std::move(store).value());
  }

  // Closes and opens the store again, as a restarted agent would.
  void reopen() {
    store_.reset();
    auto store = Store::open(dir_, kPin);
    ASSERT_TRUE(store) << store.error().message();
    store_.emplace(std::move(store).value());
  }

  Store& store() { return *store_; }

  std::int64_t count(const std::string& sql) { return store_->db().execAndGet(sql).getInt64(); }

  kaban::testing::TempDir tmp_;
  std::filesystem::path dir_ = tmp_ / "device";
  std::optional<Store> store_;
};

inline protocol::InboxChange joined(const std::string& channel, bool can_post = true,
                                    const std::string& title = "") {
  protocol::InboxChange c;
  c.kind = "channel";
  protocol::ChannelMembership m;
  m.channel = channel;
  m.kind = protocol::channel_kind(channel).value_or(protocol::ChannelKind::group);
  m.title = title.empty() ? "Title of " + channel : title;
  m.member = true;
  m.can_post = can_post;
  c.channel = m;
  return c;
}

inline protocol::InboxChange left(const std::string& channel) {
  protocol::InboxChange c = joined(channel);
  c.channel->member = false;
  return c;
}

inline protocol::InboxChange message(const std::string& id, std::int64_t seq,
                                     const std::string& channel, const std::string& sender,
                                     const std::string& body = "hello",
                                     protocol::Priority priority = protocol::Priority::normal,
                                     bool require_ack = false) {
  protocol::InboxChange c;
  c.kind = "message";
  protocol::MessageInfo m;
  m.id = id;
  m.seq = seq;
  m.channel = channel;
  m.channel_kind = protocol::channel_kind(channel).value_or(protocol::ChannelKind::group);
  m.channel_title = "Title of " + channel;
  m.sender = sender;
  m.sender_name = sender.empty() ? "IT" : "Name of " + sender;
  m.body = body;
  m.priority = priority;
  m.require_ack = require_ack;
  m.created_at = kNow - 10;
  m.accepted_at = kNow - 5;
  c.message = m;
  return c;
}

inline protocol::InboxChange read_state(const std::string& id, std::int64_t read_at,
                                        std::int64_t acked_at = 0) {
  protocol::InboxChange c;
  c.kind = "read_state";
  c.read_state = protocol::ReadState{id, read_at, acked_at};
  return c;
}

inline protocol::OutboxResult result(const protocol::OutboxItem& item,
                                     protocol::OutboxStatus status, std::string code = "",
                                     std::string reason = "") {
  return {item.id, item.seq, status, std::move(code), std::move(reason)};
}

// The server's answer for the first `n` items of `sent`, all with `status`.
inline protocol::OutboxAnswer answer_all(const protocol::OutboxUpload& sent,
                                         protocol::OutboxStatus status,
                                         std::size_t n = static_cast<std::size_t>(-1)) {
  protocol::OutboxAnswer a;
  for (std::size_t i = 0; i < sent.items.size() && i < n; ++i)
    a.results.push_back(result(sent.items[i], status));
  return a;
}

}  // namespace kaban::agent::testing
