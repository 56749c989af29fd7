// kaban: the staff member's command-line front end over kaban::agent.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "kaban/agent/attachments.hpp"
#include "kaban/agent/device_identity.hpp"
#include "kaban/agent/enroll.hpp"
#include "kaban/agent/error.hpp"
#include "kaban/agent/learning_log.hpp"
#include "kaban/agent/library.hpp"
#include "kaban/agent/messages.hpp"
#include "kaban/agent/outbox.hpp"
#include "kaban/agent/platform.hpp"
#include "kaban/agent/progress.hpp"
#include "kaban/agent/store.hpp"
#include "kaban/agent/sync.hpp"
#include "kaban/crypto/error.hpp"
#include "kaban/protocol/attachment.hpp"
#include "kaban/protocol/channel.hpp"
#include "kaban/protocol/enrollment_line.hpp"
#include "kaban/protocol/timestamp.hpp"
#include "kaban/protocol/version.hpp"

namespace {

namespace fs = std::filesystem;
using namespace kaban;
using namespace kaban::agent;
using nlohmann::json;

// Exit codes (docs/agent.md lists them for scripts).
constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;       // anything not below
constexpr int kExitUsage = 2;        // bad command line, enrollment line, or a refused request
constexpr int kExitNotEnrolled = 3;  // no store here: enroll first
constexpr int kExitWrongPin = 4;
constexpr int kExitDamaged = 5;        // the store failed authentication: wipe and sync again
constexpr int kExitOffline = 6;        // server unreachable or the connection broke: try later
constexpr int kExitRefused = 7;        // the server refused or is not the one pinned: ask IT
constexpr int kExitNotFound = 8;       // no such course, lesson, file, channel or message
constexpr int kExitInterrupted = 130;  // Ctrl-C or SIGTERM; what was done is kept

std::atomic<bool> g_stop{false};

extern "C" void on_stop_signal(int) {
  g_stop.store(true);
}

int exit_code_for(std::error_code e) {
  if (e == errc::not_enrolled || e == errc::no_store)
    return kExitNotEnrolled;
  if (e == crypto::errc::wrong_key)
    return kExitWrongPin;
  if (e == crypto::errc::damaged)
    return kExitDamaged;
  if (e == errc::server_unreachable || e == errc::network_failed)
    return kExitOffline;
  if (e == errc::server_untrusted || e == errc::server_refused || e == errc::bad_response)
    return kExitRefused;
  if (e == errc::not_found)
    return kExitNotFound;
  if (e == errc::invalid_input || e == errc::not_allowed)
    return kExitUsage;
  if (e == errc::interrupted)
    return kExitInterrupted;
  return kExitFailed;
}

// One line: what failed, why, and what to do next. Returns the exit code for it.
int fail(std::string_view what, std::error_code e, std::string_view why = {}) {
  std::string text;
  if (e == crypto::errc::wrong_key)
    text = "wrong PIN; nothing was changed. Try again";
  else if (e == crypto::errc::damaged)
    text =
        "the store on this device is damaged and cannot be trusted; nothing was read from the "
        "damaged part. Move the data directory away, enroll again and sync";
  else if (!why.empty())
    text = std::string(why) + " (" + e.message() + ")";
  else
    text = e.message();
  std::cerr << "kaban: " << what << ": " << text << '\n';
  return exit_code_for(e);
}

std::string time_text(std::int64_t unix_seconds) {
  if (unix_seconds == 0)
    return "never";
  const std::time_t t = unix_seconds;
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", &tm);
  return buf;
}

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "14:03:22", local time: the prefix of every `sync --watch` line.
std::string clock_text() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
  return buf;
}

std::string plural(std::size_t n, std::string_view one, std::string_view many = {}) {
  return std::to_string(n) + " " +
         std::string(n == 1 ? one : (many.empty() ? std::string(one) + "s" : std::string(many)));
}

struct Globals {
  std::string data_dir;
  std::string pin_file;
  bool json = false;

  fs::path dir() const {
    if (!data_dir.empty())
      return data_dir;
    if (const char* home = std::getenv("KABAN_HOME"); home && *home)
      return home;
    return platform::default_data_dir();
  }

  // The PIN from --pin-file, KABAN_PIN, or the terminal, in that order.
  Result<std::string> pin(std::string_view prompt, std::string& why) const {
    if (!pin_file.empty()) {
      std::ifstream in(pin_file);
      std::string line;
      if (!in || !std::getline(in, line)) {
        why = "cannot read the PIN from " + pin_file;
        return errc::storage_failed;
      }
      if (!line.empty() && line.back() == '\r')
        line.pop_back();
      return line;
    }
    if (const char* env = std::getenv("KABAN_PIN"); env)
      return std::string(env);
    auto typed = platform::read_secret(prompt);
    if (!typed)
      why = "no PIN given: type it on a terminal, or set KABAN_PIN or --pin-file for scripts";
    return typed;
  }
};

int open_store(const Globals& g, std::optional<Store>& store) {
  const fs::path dir = g.dir();
  if (!Store::exists(dir))
    return fail("no Kaban store in " + dir.string(), errc::not_enrolled);
  std::string why;
  auto pin = g.pin("PIN: ", why);
  if (!pin)
    return fail("cannot open the store", pin.error(), why);
  auto opened = Store::open(dir, pin.value());
  crypto::secure_wipe(pin.value());
  if (!opened)
    return fail("cannot open the store in " + dir.string(), opened.error());
  store.emplace(std::move(opened).value());
  return kExitOk;
}

// The store and who it belongs to: what the message and progress commands need.
struct Session {
  std::optional<Store> store;
  std::optional<DeviceIdentity> identity;
};

int open_session(const Globals& g, Session& session, std::string_view what) {
  if (int rc = open_store(g, session.store); rc != kExitOk)
    return rc;
  auto identity = load_identity(*session.store);
  if (!identity)
    return fail(what, identity.error());
  session.identity.emplace(std::move(identity).value());
  return kExitOk;
}

Messages messages_of(Session& s) {
  return Messages(*s.store, s.identity->login, s.identity->user_name);
}

int run_enroll(const Globals& g, const std::string& line_text) {
  std::string why;
  auto line = protocol::EnrollmentLine::parse(line_text, &why);
  if (!line) {
    std::cerr << "kaban: enroll: " << why
              << ". Enter the whole line IT gave you, starting with kaban://\n";
    return kExitUsage;
  }
  const fs::path dir = g.dir();
  if (Store::exists(dir))
    return fail("enroll", errc::already_enrolled, dir.string() + " already holds a Kaban store");

  // A PIN given by a script is checked before the code is spent on the server.
  std::string pin;
  const bool scripted = !g.pin_file.empty() || std::getenv("KABAN_PIN");
  if (scripted) {
    auto given = g.pin("", why);
    if (!given)
      return fail("enroll", given.error(), why);
    pin = std::move(given).value();
    if (!check_new_pin(pin, why)) {
      std::cerr << "kaban: enroll: " << why << "; nothing was sent to the server\n";
      return kExitUsage;
    }
  }

  auto identity = request_enrollment(line.value(), {}, why);
  if (!identity)
    return fail("enroll with " + line.value().host, identity.error(), why);

  if (!scripted) {
    std::cout << "Enrolled. Choose a PIN for this device (at least " << kMinPinLength
              << " characters); it protects the data stored here.\n";
    for (;;) {
      auto first = platform::read_secret("New PIN: ");
      if (!first)
        return fail("enroll", first.error(),
                    "no PIN given: type it on a terminal, or set KABAN_PIN or --pin-file");
      if (!check_new_pin(first.value(), why)) {
        std::cout << why << ". Try again.\n";
        continue;
      }
      auto again = platform::read_secret("Repeat the PIN: ");
      if (!again)
        return fail("enroll", again.error());
      if (again.value() == first.value()) {
        pin = std::move(first).value();
        break;
      }
      std::cout << "The two PINs differ. Try again.\n";
    }
  }
  auto done = complete_enrollment(dir, identity.value(), pin);
  crypto::secure_wipe(pin);
  if (!done)
    return fail("enroll: storing the enrollment in " + dir.string(), done.error());
  std::cout << "enrolled as " << identity.value().login << " (" << identity.value().user_name
            << ") with " << line.value().host << ":" << line.value().port << "\ndevice id "
            << identity.value().device_id << "\nnext: kaban sync\n";
  return kExitOk;
}

// One clause about the message lane of a sync or watch round.
std::string message_summary(const SyncReport& r) {
  if (!r.messages_offered)
    return "the server has no message lane yet; messages wait on this device";
  std::vector<std::string> parts;
  std::string received = plural(r.messages_received, "new message");
  if (r.urgent_received)
    received += " (" + std::to_string(r.urgent_received) + " urgent)";
  parts.push_back(received);
  if (r.outbox_sent)
    parts.push_back(plural(r.outbox_sent, "outbox item") + " sent");
  if (r.outbox_rejected)
    parts.push_back(plural(r.outbox_rejected, "outbox item") +
                    " refused by the server (see `kaban outbox`)");
  if (r.attachments_fetched || r.attachment_bytes_fetched)
    parts.push_back(plural(r.attachments_fetched, "attachment") + " (" +
                    format_bytes(r.attachment_bytes_fetched) + ") downloaded");
  if (r.statements_received)
    parts.push_back(plural(r.statements_received, "learning record") + " from your other devices");
  std::string text;
  for (const std::string& part : parts)
    text += (text.empty() ? "" : ", ") + part;
  return text;
}

std::string course_summary(const SyncReport& r) {
  return plural(r.new_versions, "new course version") + ", " + std::to_string(r.chunks_downloaded) +
         " chunks (" + format_bytes(r.bytes_downloaded) + ") downloaded";
}

int run_sync(const Globals& g, int parallel, bool watch_mode, int interval) {
  std::optional<Store> store;
  if (int rc = open_store(g, store); rc != kExitOk)
    return rc;
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  std::unique_ptr<TransferProgress> progress;
  SyncOptions options;
  options.parallel_downloads = parallel;
  options.stop = &g_stop;
  options.on_download_start = [&](std::uint64_t bytes, std::size_t chunks) {
    if (progress)
      progress->finish();
    std::fprintf(stderr, "downloading %s in %zu chunks\n", format_bytes(bytes).c_str(), chunks);
    progress =
        std::make_unique<TransferProgress>(bytes, stderr, TransferProgress::style_for(stderr),
                                           platform::terminal_width(STDERR_FILENO));
  };
  options.on_bytes = [&](std::uint64_t bytes) { progress->add(bytes); };
  std::string why;

  if (watch_mode) {
    WatchOptions watching;
    watching.sync = options;
    watching.full_interval = std::chrono::seconds(interval);
    watching.on_round = [&](const WatchRound& round) {
      if (progress) {
        progress->finish();
        progress.reset();
      }
      const bool full = round.kind == WatchRound::Kind::full;
      std::string line = clock_text() + " ";
      if (round.error) {
        const auto retry = std::chrono::ceil<std::chrono::seconds>(round.retry_in).count();
        line += std::string(full ? "sync" : "messages") + " failed: " +
                (round.why.empty() ? round.error.message()
                                   : round.why + " (" + round.error.message() + ")") +
                "; what arrived is kept; retrying in " + std::to_string(retry) + " s";
      } else if (full) {
        line += "synced: " + course_summary(round.report) + "; " + message_summary(round.report);
        for (const std::string& ready : round.report.made_ready)
          line += "; ready offline: " + ready;
      } else {
        line += "messages: " + message_summary(round.report);
      }
      std::cerr << line << std::endl;
    };
    std::cerr << clock_text() << " watching: new messages arrive as they are sent; a full sync "
              << "every " << interval << " s. Ctrl-C stops.\n";
    auto watched = watch(*store, watching, why);
    if (progress)
      progress->finish();
    if (!watched && watched.error() == errc::interrupted) {
      std::cerr << clock_text() << " stopped; everything received so far is kept\n";
      return kExitInterrupted;
    }
    return fail("sync --watch", watched ? make_error_code(errc::interrupted) : watched.error(),
                why);
  }

  auto report = sync(*store, options, why);
  if (progress)
    progress->finish();
  if (!report)
    return fail("sync", report.error(), why);
  const SyncReport& r = report.value();
  std::cout << "synced: " << course_summary(r) << '\n';
  for (const std::string& ready : r.made_ready)
    std::cout << "ready offline: " << ready << '\n';
  std::cout << "messages: " << message_summary(r) << '\n';
  return kExitOk;
}

// Display name of a sender.
std::string sender_text(const MessageView& m) {
  if (m.own)
    return "you";
  if (m.sender.empty())
    return "IT";
  return m.sender_name.empty() ? m.sender : m.sender_name + " (" + m.sender + ")";
}

json message_json(const MessageView& m) {
  json attachments = json::array();
  for (const AttachmentView& a : m.attachments)
    attachments.push_back({{"name", a.name},
                           {"media_type", a.media_type},
                           {"size", a.size},
                           {"sha256", a.sha256},
                           {"downloaded", a.downloaded}});
  return {{"id", m.id},
          {"channel", m.channel},
          {"channel_title", m.channel_title},
          {"sender", m.sender},
          {"sender_name", m.sender_name},
          {"body", m.body},
          {"priority", std::string(protocol::to_string(m.priority))},
          {"require_ack", m.require_ack},
          {"acked", m.acked_at != 0},
          {"read", m.read},
          {"state", std::string(to_string(m.state))},
          {"reason", m.reason},
          {"created_at", protocol::format_timestamp(m.created_at)},
          {"accepted_at", protocol::format_timestamp(m.accepted_at)},
          {"seq", m.seq == 0 ? json(nullptr) : json(m.seq)},
          {"attachments", std::move(attachments)}};
}

int run_channels(const Globals& g) {
  Session s;
  if (int rc = open_session(g, s, "channels"); rc != kExitOk)
    return rc;
  auto channels = messages_of(s).channels();
  if (!channels)
    return fail("channels", channels.error());
  if (g.json) {
    json list = json::array();
    for (const ChannelInfo& c : channels.value())
      list.push_back({{"id", c.id},
                      {"kind", std::string(protocol::to_string(c.kind))},
                      {"title", c.title},
                      {"unread", c.unread},
                      {"can_post", c.can_post}});
    std::cout << list.dump(2) << '\n';
    return kExitOk;
  }
  if (channels.value().empty()) {
    std::cout << "no channels on this device yet; run `kaban sync` when online\n";
    return kExitOk;
  }
  std::size_t width = 0;
  for (const ChannelInfo& c : channels.value())
    width = std::max(width, c.id.size());
  for (const ChannelInfo& c : channels.value()) {
    std::cout << std::left << std::setw(static_cast<int>(width)) << c.id << "  " << std::setw(12)
              << protocol::to_string(c.kind) << "  " << c.title;
    if (c.unread)
      std::cout << "  (" << c.unread << " unread)";
    if (!c.can_post)
      std::cout << "  [read only]";
    std::cout << '\n';
  }
  return kExitOk;
}

int run_messages(const Globals& g, const std::string& channel, bool unread_only) {
  Session s;
  if (int rc = open_session(g, s, "messages"); rc != kExitOk)
    return rc;
  Messages messages = messages_of(s);
  MessageFilter filter;
  filter.unread_only = unread_only;
  if (!channel.empty()) {
    auto id = messages.resolve_channel(channel);
    if (!id)
      return fail("messages", id.error(),
                  "\"" + channel +
                      "\" is not a channel name: use a channel id as `kaban "
                      "channels` shows it, or @LOGIN for a direct conversation");
    filter.channel = std::move(id).value();
  }
  auto list = messages.list(filter);
  if (!list)
    return fail("messages", list.error(),
                list.error() == errc::not_found
                    ? "no channel \"" + channel + "\" on this device; `kaban channels` lists them"
                    : "");
  if (g.json) {
    json out = json::array();
    for (const MessageView& m : list.value())
      out.push_back(message_json(m));
    std::cout << out.dump(2) << '\n';
    return kExitOk;
  }
  if (list.value().empty()) {
    std::cout << (unread_only ? "no unread messages\n" : "no messages yet\n");
    return kExitOk;
  }
  for (const MessageView& m : list.value()) {
    std::vector<std::string> marks;
    if (m.priority != protocol::Priority::normal) {
      std::string p(protocol::to_string(m.priority));
      for (char& c : p)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      marks.push_back(p);
    }
    if (m.require_ack)
      marks.push_back(m.acked_at ? "acknowledged" : "needs acknowledgement");
    if (!m.read)
      marks.push_back("unread");
    if (m.state == MessageState::pending)
      marks.push_back("pending");
    if (m.state == MessageState::rejected)
      marks.push_back("not sent: " + m.reason);
    std::cout << time_text(m.accepted_at ? m.accepted_at : m.created_at) << "  " << m.channel
              << "  " << sender_text(m);
    for (std::size_t i = 0; i < marks.size(); ++i)
      std::cout << (i == 0 ? "  [" : ", ") << marks[i] << (i + 1 == marks.size() ? "]" : "");
    std::cout << '\n';
    std::istringstream body(m.body);
    for (std::string line; std::getline(body, line);)
      std::cout << "    " << line << '\n';
    for (const AttachmentView& a : m.attachments)
      std::cout << "    attachment: " << a.name << " (" << format_bytes(a.size) << ")"
                << (a.downloaded ? "" : ", not downloaded yet") << '\n';
    std::cout << "    id " << m.id << '\n';
  }
  return kExitOk;
}

// The media type of a few common kinds of file, by extension; "" for anything else.
std::string guess_media_type(const fs::path& file) {
  static constexpr std::pair<std::string_view, std::string_view> kTypes[] = {
      {".pdf", "application/pdf"}, {".jpg", "image/jpeg"}, {".jpeg", "image/jpeg"},
      {".png", "image/png"},       {".txt", "text/plain"}, {".wav", "audio/wav"},
      {".mp4", "video/mp4"}};
  std::string extension = file.extension().string();
  for (char& c : extension)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& [suffix, type] : kTypes) {
    if (extension == suffix)
      return std::string(type);
  }
  return {};
}

// Reads the files to attach, checking the limits first so that each refusal names its file.
// Returns kExitOk, or the exit code after printing the one line.
int read_attachments(const std::vector<std::string>& paths, std::vector<AttachmentFile>& files) {
  if (paths.size() > protocol::kMaxAttachments) {
    std::cerr << "kaban: send: a message carries at most " << protocol::kMaxAttachments
              << " attachments; nothing was stored\n";
    return kExitUsage;
  }
  for (const std::string& path : paths) {
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    if (ec || !fs::is_regular_file(path, ec)) {
      std::cerr << "kaban: send: cannot attach " << path << ": "
                << (ec ? ec.message() : "not a regular file") << "; nothing was stored\n";
      return kExitUsage;
    }
    if (size == 0 || size > protocol::kMaxAttachmentSize) {
      std::cerr << "kaban: send: cannot attach " << path << ": it is "
                << (size == 0 ? "empty" : format_bytes(size)) << "; an attachment is 1 byte to "
                << format_bytes(protocol::kMaxAttachmentSize) << ". Nothing was stored\n";
      return kExitUsage;
    }
    AttachmentFile file;
    file.name = fs::path(path).filename().string();
    if (!protocol::is_valid_attachment_name(file.name)) {
      std::cerr << "kaban: send: cannot attach " << path << ": its name cannot be sent (at most "
                << protocol::kMaxAttachmentName
                << " bytes of text, without control characters, '\\' or ':'); copy it to a "
                   "plainer name. Nothing was stored\n";
      return kExitUsage;
    }
    for (const AttachmentFile& earlier : files) {
      if (earlier.name == file.name) {
        std::cerr << "kaban: send: two attachments are named \"" << file.name
                  << "\"; rename one. Nothing was stored\n";
        return kExitUsage;
      }
    }
    file.media_type = guess_media_type(path);
    std::ifstream in(path, std::ios::binary);
    file.bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) {
      std::cerr << "kaban: send: cannot read " << path << "; nothing was stored\n";
      return kExitFailed;
    }
    if (file.bytes.size() != size) {
      std::cerr << "kaban: send: " << path
                << " changed while it was read; nothing was stored. Try again\n";
      return kExitFailed;
    }
    files.push_back(std::move(file));
  }
  return kExitOk;
}

int run_send(const Globals& g, const std::string& channel, std::string text,
             const std::string& priority_text, bool require_ack,
             const std::vector<std::string>& attach) {
  const auto priority = protocol::parse_priority(priority_text);
  if (!priority) {
    std::cerr << "kaban: send: --priority is normal, urgent or emergency\n";
    return kExitUsage;
  }
  std::vector<AttachmentFile> files;
  if (int rc = read_attachments(attach, files); rc != kExitOk)
    return rc;
  if (text == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
      text.pop_back();
  }
  Session s;
  if (int rc = open_session(g, s, "send"); rc != kExitOk)
    return rc;
  Messages messages = messages_of(s);
  auto id = messages.resolve_channel(channel);
  if (!id)
    return fail("send", id.error(),
                "\"" + channel +
                    "\" is not a channel name: use a channel id as `kaban channels` "
                    "shows it, or @LOGIN for a direct conversation (not yourself)");
  auto sent = messages.send(id.value(), text, *priority, require_ack, unix_now(), files);
  if (!sent) {
    std::string why;
    if (sent.error() == errc::not_found)
      why = "you are not in channel \"" + id.value() +
            "\" on this device; `kaban channels` "
            "lists yours (run `kaban sync` first if you were just added)";
    else if (sent.error() == errc::not_allowed)
      why = "only IT and the channel's named senders post to \"" + id.value() + "\"";
    else if (sent.error() == errc::invalid_input)
      why = require_ack && protocol::channel_kind(id.value()) != protocol::ChannelKind::announcement
                ? "--require-ack is for announcement channels only"
                : "a message is 1 to " + std::to_string(protocol::kMaxMessageBody) +
                      " bytes of text without control characters";
    return fail("send", sent.error(), why.empty() ? why : why + "; nothing was stored");
  }
  std::cout << "pending: message " << sent.value().id << " to " << sent.value().channel;
  if (!files.empty()) {
    std::uint64_t bytes = 0;
    for (const AttachmentFile& f : files)
      bytes += f.bytes.size();
    std::cout << " with " << plural(files.size(), "attachment") << " (" << format_bytes(bytes)
              << ")";
  }
  std::cout << "; it goes with the next `kaban sync` (or at once under `kaban sync --watch`)\n";
  return kExitOk;
}

std::string attachment_names(const std::vector<AttachmentView>& attachments) {
  std::string names;
  for (const AttachmentView& a : attachments)
    names += (names.empty() ? "\"" : ", \"") + a.name + "\"";
  return names;
}

int run_attachment(const Globals& g, const std::string& message_id, const std::string& name,
                   const std::string& out_path) {
  Session s;
  if (int rc = open_session(g, s, "attachment"); rc != kExitOk)
    return rc;
  Attachments attachments(*s.store);
  auto listed = attachments.list(message_id);
  if (!listed)
    return fail("attachment", listed.error(),
                listed.error() == errc::not_found
                    ? "no message " + message_id +
                          " on this device; `kaban messages` lists messages with their ids"
                    : "");
  const std::vector<AttachmentView>& all = listed.value();
  if (all.empty()) {
    std::cerr << "kaban: attachment: message " << message_id << " has no attachments\n";
    return kExitNotFound;
  }
  const AttachmentView* chosen = nullptr;
  if (name.empty()) {
    if (all.size() > 1) {
      std::cerr << "kaban: attachment: message " << message_id << " has " << all.size()
                << " attachments (" << attachment_names(all)
                << "); name the one you want after the message id\n";
      return kExitUsage;
    }
    chosen = &all.front();
  } else {
    for (const AttachmentView& a : all) {
      if (a.name == name)
        chosen = &a;
    }
    if (chosen == nullptr) {
      std::cerr << "kaban: attachment: message " << message_id << " has no attachment \"" << name
                << "\"; it has " << attachment_names(all) << '\n';
      return kExitNotFound;
    }
  }
  const std::string not_yet = "\"" + chosen->name + "\" of message " + message_id +
                              " is not downloaded yet; run `kaban sync` when online, then try "
                              "again";
  if (!chosen->downloaded) {
    std::cerr << "kaban: attachment: " << not_yet << '\n';
    return kExitNotFound;
  }
  auto bytes = attachments.read(message_id, chosen->name);
  if (!bytes) {
    if (bytes.error() == errc::not_found) {
      std::cerr << "kaban: attachment: " << not_yet << '\n';
      return kExitNotFound;
    }
    if (bytes.error() == errc::content_invalid) {
      std::cerr << "kaban: attachment: the bytes of \"" << chosen->name
                << "\" on this device do not match its SHA-256; nothing was written. Ask the "
                   "sender to send it again\n";
      return kExitFailed;
    }
    return fail("attachment", bytes.error());
  }
  const std::string& data = bytes.value();
  if (out_path.empty()) {
    std::cout.write(data.data(), static_cast<std::streamsize>(data.size()));
    std::cout.flush();
    if (!std::cout)
      return fail("attachment: writing to stdout", errc::storage_failed);
    return kExitOk;
  }
  // Written to a temporary file renamed at the end, so FILE is whole or absent.
  const fs::path partial = out_path + ".partial";
  {
    std::ofstream file(partial, std::ios::binary | std::ios::trunc);
    file.write(data.data(), static_cast<std::streamsize>(data.size()));
    file.close();
    std::error_code ec;
    if (file)
      fs::rename(partial, out_path, ec);
    if (!file || ec) {
      fs::remove(partial, ec);
      std::cerr << "kaban: attachment: cannot write " << out_path
                << "; nothing was written. Check that its folder exists, is writable and has "
                   "room\n";
      return kExitFailed;
    }
  }
  std::cerr << "wrote " << out_path << " (" << format_bytes(data.size()) << ")\n";
  return kExitOk;
}

int run_read(const Globals& g, const std::vector<std::string>& targets) {
  Session s;
  if (int rc = open_session(g, s, "read"); rc != kExitOk)
    return rc;
  auto marked = messages_of(s).mark_read(targets, unix_now());
  if (!marked)
    return fail("read", marked.error(),
                marked.error() == errc::not_found
                    ? "one of the names is neither a channel nor a message on this device; "
                      "nothing was marked. `kaban channels` and `kaban messages` list them"
                    : "");
  std::cout << "marked " << plural(marked.value(), "message") << " read\n";
  return kExitOk;
}

int run_ack(const Globals& g, const std::string& id) {
  Session s;
  if (int rc = open_session(g, s, "ack"); rc != kExitOk)
    return rc;
  auto acked = messages_of(s).acknowledge(id, unix_now());
  if (!acked) {
    std::string why;
    if (acked.error() == errc::not_found)
      why = "no message " + id + " from the server on this device; `kaban messages` lists them";
    else if (acked.error() == errc::not_allowed)
      why = "message " + id + " does not ask for acknowledgement; nothing was recorded";
    return fail("ack", acked.error(), why);
  }
  if (acked.value())
    std::cout << "acknowledged " << id << "; the acknowledgement goes with the next sync\n";
  else
    std::cout << "message " << id << " was acknowledged already\n";
  return kExitOk;
}

int run_outbox(const Globals& g) {
  Session s;
  if (int rc = open_session(g, s, "outbox"); rc != kExitOk)
    return rc;
  auto entries = Outbox(*s.store).list();
  if (!entries)
    return fail("outbox", entries.error());
  if (g.json) {
    json list = json::array();
    for (const OutboxEntry& e : entries.value())
      list.push_back({{"id", e.id},
                      {"seq", e.seq},
                      {"kind", e.kind},
                      {"state", e.rejected ? "rejected" : "pending"},
                      {"code", e.code},
                      {"reason", e.reason},
                      {"created_at", protocol::format_timestamp(e.created_at)},
                      {"description", e.description}});
    std::cout << list.dump(2) << '\n';
    return kExitOk;
  }
  if (entries.value().empty()) {
    std::cout << "the outbox is empty: the server holds everything made on this device\n";
    return kExitOk;
  }
  for (const OutboxEntry& e : entries.value()) {
    std::cout << (e.rejected ? "rejected  " : "pending   ") << time_text(e.created_at) << "  "
              << e.description << "\n    id " << e.id << '\n';
    if (e.rejected)
      std::cout << "    refused by the server: " << e.reason << (e.code.empty() ? "" : " (")
                << e.code << (e.code.empty() ? "" : ")") << "\n    `kaban outbox discard " << e.id
                << "` removes it\n";
  }
  return kExitOk;
}

int run_outbox_discard(const Globals& g, const std::string& id) {
  Session s;
  if (int rc = open_session(g, s, "outbox discard"); rc != kExitOk)
    return rc;
  auto discarded = Outbox(*s.store).discard(id);
  if (!discarded) {
    std::string why;
    if (discarded.error() == errc::not_found)
      why = "no item " + id + " in the outbox; `kaban outbox` lists them";
    else if (discarded.error() == errc::not_allowed)
      why = "item " + id +
            " is still pending: it goes with the next sync, and only items the "
            "server refused can be discarded";
    return fail("outbox discard", discarded.error(), why);
  }
  std::cout << "discarded " << id << '\n';
  return kExitOk;
}

// A lesson named on the command line, with the error line for a name that does not resolve.
int resolve_lesson(LearningLog& log, std::string_view what, const std::string& text,
                   LessonTarget& target) {
  auto resolved = log.resolve_lesson(text);
  if (resolved) {
    target = std::move(resolved).value();
    return kExitOk;
  }
  if (resolved.error() == errc::invalid_input)
    return fail(what, resolved.error(),
                "lesson \"" + text + "\" is in several courses; name it as COURSE/LESSON");
  return fail(what, resolved.error(),
              resolved.error() == errc::not_found
                  ? "no lesson \"" + text +
                        "\" in a course on this device; `kaban courses` and "
                        "`kaban lessons COURSE` list them"
                  : "");
}

std::optional<std::int64_t> duration_option(const std::string& text, std::string_view what,
                                            int& rc) {
  rc = kExitOk;
  if (text.empty())
    return std::nullopt;
  auto seconds = parse_time_span(text);
  if (!seconds) {
    std::cerr << "kaban: " << what << ": --duration \"" << text
              << "\" is not a time span; write it like 10m, 1h30m or 90s\n";
    rc = kExitUsage;
  }
  return seconds;
}

int run_progress_list(const Globals& g) {
  Session s;
  if (int rc = open_session(g, s, "progress"); rc != kExitOk)
    return rc;
  LearningLog log(*s.store, learner_of(*s.identity));
  auto summary = log.summary();
  if (!summary)
    return fail("progress", summary.error());
  if (g.json) {
    json list = json::array();
    for (const LessonProgress& p : summary.value())
      list.push_back({{"id", p.lesson_id.empty() ? p.course_id : p.course_id + "/" + p.lesson_id},
                      {"course_id", p.course_id},
                      {"lesson_id", p.lesson_id},
                      {"best_percent", p.best_percent},
                      {"completed_at", protocol::format_timestamp(p.completed_at)},
                      {"best_score", p.best_score ? json(*p.best_score) : json(nullptr)},
                      {"seconds_spent", p.seconds_spent},
                      {"last_at", protocol::format_timestamp(p.last_at)},
                      {"pending_upload", p.pending_upload},
                      {"rejected", p.rejected}});
    std::cout << list.dump(2) << '\n';
    return kExitOk;
  }
  if (summary.value().empty()) {
    std::cout << "no progress recorded yet; `kaban progress COURSE/LESSON --percent N` records "
                 "some\n";
    return kExitOk;
  }
  for (const LessonProgress& p : summary.value()) {
    std::cout << (p.lesson_id.empty() ? p.course_id : p.course_id + "/" + p.lesson_id) << "  ";
    if (p.completed_at)
      std::cout << "completed " << time_text(p.completed_at);
    else
      std::cout << p.best_percent << "%";
    if (p.best_score)
      std::cout << ", score " << static_cast<int>(*p.best_score * 100 + 0.5) << "%";
    std::cout << ", time spent " << format_duration(std::chrono::seconds(p.seconds_spent))
              << ", last " << time_text(p.last_at);
    if (p.pending_upload)
      std::cout << ", pending upload";
    if (p.rejected)
      std::cout << ", " << p.rejected << " refused by the server (see `kaban outbox`)";
    std::cout << '\n';
  }
  return kExitOk;
}

int run_progress(const Globals& g, const std::string& lesson, std::optional<int> percent,
                 const std::string& duration_text) {
  if (!percent) {
    std::cerr << "kaban: progress: give --percent N (0 to 100) with the lesson, or no lesson "
                 "to list your progress\n";
    return kExitUsage;
  }
  int rc = kExitOk;
  const auto duration = duration_option(duration_text, "progress", rc);
  if (rc != kExitOk)
    return rc;
  Session s;
  if (rc = open_session(g, s, "progress"); rc != kExitOk)
    return rc;
  LearningLog log(*s.store, learner_of(*s.identity));
  LessonTarget target;
  if (rc = resolve_lesson(log, "progress", lesson, target); rc != kExitOk)
    return rc;
  auto recorded = log.record_progress(target, *percent, duration, unix_now());
  if (!recorded)
    return fail("progress", recorded.error());
  std::cout << "recorded " << *percent << "% of " << target.course_id << '/' << target.lesson_id
            << "; it is uploaded at the next sync\n";
  return kExitOk;
}

int run_complete(const Globals& g, const std::string& lesson, std::optional<double> score,
                 const std::string& duration_text) {
  int rc = kExitOk;
  const auto duration = duration_option(duration_text, "complete", rc);
  if (rc != kExitOk)
    return rc;
  Session s;
  if (rc = open_session(g, s, "complete"); rc != kExitOk)
    return rc;
  LearningLog log(*s.store, learner_of(*s.identity));
  LessonTarget target;
  if (rc = resolve_lesson(log, "complete", lesson, target); rc != kExitOk)
    return rc;
  auto recorded = log.record_completion(target, score, duration, unix_now());
  if (!recorded)
    return fail("complete", recorded.error());
  std::cout << "recorded completion of " << target.course_id << '/' << target.lesson_id
            << "; it is uploaded at the next sync\n";
  return kExitOk;
}

int run_courses(const Globals& g) {
  std::optional<Store> store;
  if (int rc = open_store(g, store); rc != kExitOk)
    return rc;
  Library library(*store);
  auto courses = library.courses();
  if (!courses)
    return fail("courses", courses.error());
  if (g.json) {
    json list = json::array();
    for (const CourseInfo& c : courses.value())
      list.push_back({{"id", c.id},
                      {"title", c.title},
                      {"description", c.description},
                      {"version", c.version},
                      {"lessons", c.lessons},
                      {"size", c.total_size},
                      {"ready", c.ready},
                      {"pending_bytes", c.pending_bytes}});
    std::cout << list.dump(2) << '\n';
    return kExitOk;
  }
  if (courses.value().empty()) {
    std::cout << "no courses on this device yet; run `kaban sync` when online\n";
    return kExitOk;
  }
  for (const CourseInfo& c : courses.value()) {
    std::cout << c.id << "  " << c.title << "\n    " << c.lessons << " lesson"
              << (c.lessons == 1 ? "" : "s") << ", " << format_bytes(c.total_size) << ", "
              << (c.ready ? "downloaded, readable offline" : "downloading");
    if (c.pending_bytes)
      std::cout << " (" << format_bytes(c.pending_bytes) << " still to fetch)";
    std::cout << '\n';
  }
  return kExitOk;
}

int run_lessons(const Globals& g, const std::string& course) {
  std::optional<Store> store;
  if (int rc = open_store(g, store); rc != kExitOk)
    return rc;
  Library library(*store);
  auto lessons = library.lessons(course);
  if (!lessons)
    return fail("lessons of " + course, lessons.error(),
                "no readable course \"" + course + "\" here; `kaban courses` lists them");
  if (g.json) {
    json list = json::array();
    for (const LessonInfo& l : lessons.value())
      list.push_back({{"id", l.course_id + "/" + l.id},
                      {"course_id", l.course_id},
                      {"lesson_id", l.id},
                      {"title", l.title},
                      {"kind", l.kind},
                      {"duration_minutes", l.duration_minutes},
                      {"files", l.files},
                      {"size", l.size}});
    std::cout << list.dump(2) << '\n';
    return kExitOk;
  }
  for (const LessonInfo& l : lessons.value())
    std::cout << l.course_id << '/' << l.id << "  " << l.title << "  (" << l.kind << ", "
              << l.duration_minutes << " min, " << format_bytes(l.size) << ")\n";
  return kExitOk;
}

int run_open(const Globals& g, const std::string& lesson_ref, const std::string& file,
             const std::string& out_path) {
  const std::size_t slash = lesson_ref.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == lesson_ref.size()) {
    std::cerr << "kaban: open: name the lesson as COURSE/LESSON, as `kaban lessons COURSE` "
                 "shows it\n";
    return kExitUsage;
  }
  const std::string course = lesson_ref.substr(0, slash);
  const std::string lesson = lesson_ref.substr(slash + 1);
  std::optional<Store> store;
  if (int rc = open_store(g, store); rc != kExitOk)
    return rc;
  Library library(*store);

  // Writing to PATH goes through a temporary file renamed at the end, so a failure never
  // leaves a partial lesson where the person expects a whole one.
  const fs::path target = out_path;
  const fs::path partial = out_path.empty() ? fs::path() : fs::path(out_path + ".partial");
  std::FILE* sink_file = stdout;
  if (!out_path.empty()) {
    sink_file = std::fopen(partial.c_str(), "wb");
    if (!sink_file) {
      std::cerr << "kaban: open: cannot write " << partial << ": " << std::strerror(errno) << '\n';
      return kExitFailed;
    }
  }
  auto streamed =
      library.open_file(course, lesson, file, [&](crypto::ByteView bytes) -> Result<void> {
        if (std::fwrite(bytes.data(), 1, bytes.size(), sink_file) != bytes.size())
          return errc::storage_failed;
        return ok();
      });
  if (!out_path.empty()) {
    const bool closed = std::fclose(sink_file) == 0;
    std::error_code ec;
    if (streamed && closed)
      fs::rename(partial, target, ec);
    if (!streamed || !closed || ec) {
      fs::remove(partial, ec);
      if (streamed)
        return fail("open: writing " + out_path, errc::storage_failed);
    }
  } else {
    std::fflush(stdout);
  }
  if (!streamed)
    return fail("open " + lesson_ref, streamed.error(),
                streamed.error() == errc::not_found
                    ? "no such lesson or file here; `kaban lessons " + course + "` lists them"
                    : "");
  if (!out_path.empty())
    std::cerr << "wrote " << out_path << '\n';
  return kExitOk;
}

int run_status(const Globals& g) {
  std::optional<Store> store;
  if (int rc = open_store(g, store); rc != kExitOk)
    return rc;
  auto identity = load_identity(*store);
  if (!identity)
    return fail("status", identity.error());
  auto state = load_sync_state(*store);
  if (!state)
    return fail("status", state.error());
  Library library(*store);
  auto courses = library.courses();
  auto stored = library.stored_bytes();
  if (!courses || !stored)
    return fail("status", courses ? stored.error() : courses.error());
  auto unread = Messages(*store, identity.value().login, identity.value().user_name).unread_count();
  auto outbox = Outbox(*store).counts();
  if (!unread || !outbox)
    return fail("status", unread ? outbox.error() : unread.error());
  const DeviceIdentity& id = identity.value();
  std::size_t ready = 0;
  for (const CourseInfo& c : courses.value())
    ready += c.ready ? 1 : 0;
  if (g.json) {
    std::cout << json{{"server", id.server_host + ":" + std::to_string(id.server_port)},
                      {"login", id.login},
                      {"user_name", id.user_name},
                      {"device_id", id.device_id},
                      {"enrolled_at", protocol::format_timestamp(id.enrolled_at)},
                      {"last_sync_at", protocol::format_timestamp(state.value().last_sync_at)},
                      {"courses", courses.value().size()},
                      {"courses_ready", ready},
                      {"stored_bytes", stored.value()},
                      {"unread_messages", unread.value()},
                      {"outbox_pending", outbox.value().pending},
                      {"outbox_rejected", outbox.value().rejected},
                      {"data_dir", g.dir().string()}}
                     .dump(2)
              << '\n';
    return kExitOk;
  }
  std::cout << "server     " << id.server_host << ':' << id.server_port << "\nuser       "
            << id.login << " (" << id.user_name << ")\ndevice id  " << id.device_id
            << "\nenrolled   " << time_text(id.enrolled_at) << "\nlast sync  "
            << time_text(state.value().last_sync_at) << "\ncourses    " << ready
            << " readable offline of " << courses.value().size() << ", "
            << format_bytes(stored.value()) << " stored\nmessages   " << unread.value()
            << " unread\noutbox     " << outbox.value().pending << " waiting for upload, "
            << outbox.value().rejected << " refused by the server"
            << (outbox.value().rejected ? " (see `kaban outbox`)" : "") << "\ndata       "
            << g.dir().string() << '\n';
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{
      "kaban: carries your training courses and staff messages on this device, encrypted,\n"
      "and keeps them readable offline.\n\n"
      "Start with `kaban enroll LINE` (the line IT gave you), then `kaban sync` when online.\n"
      "The PIN comes from the terminal, or from KABAN_PIN or --pin-file in scripts."};
  app.set_version_flag("--version", std::string(protocol::kaban_version()));
  app.require_subcommand(1);
  Globals g;
  app.add_option("--data-dir", g.data_dir,
                 "Where this device's encrypted store lives (default: $KABAN_HOME, else " +
                     platform::default_data_dir().string() + ")");
  app.add_option("--pin-file", g.pin_file, "Read the PIN from the first line of this file");

  std::string line, course, lesson, file, out;
  int parallel = SyncOptions{}.parallel_downloads;
  bool watch_mode = false;
  int interval = static_cast<int>(WatchOptions{}.full_interval.count());
  auto* enroll = app.add_subcommand("enroll", "Enroll this device with the line IT gave you");
  enroll->add_option("LINE", line, "kaban://HOST:PORT?code=...&ca=...")->required();
  auto* sync_cmd = app.add_subcommand(
      "sync",
      "Check in, send the outbox, fetch new messages (urgent ones first), then new and updated "
      "courses; resumes where an interrupted sync stopped");
  sync_cmd->add_option("--parallel", parallel, "Chunk downloads at once")
      ->check(CLI::Range(1, 16))
      ->capture_default_str();
  sync_cmd->add_flag("--watch", watch_mode,
                     "Keep running: new messages arrive within seconds (the server holds a "
                     "request open until there is news), a full sync every --interval; "
                     "failures are retried with growing pauses; one line per round on stderr; "
                     "Ctrl-C stops");
  sync_cmd->add_option("--interval", interval, "With --watch: seconds between full syncs")
      ->check(CLI::Range(10, 86400))
      ->capture_default_str();
  auto* courses = app.add_subcommand("courses", "List the courses on this device (offline)");
  courses->add_flag("--json", g.json, "Print JSON");
  auto* lessons = app.add_subcommand("lessons", "List a course's lessons (offline)");
  lessons->add_option("COURSE", course, "Course id, as `kaban courses` shows it")->required();
  lessons->add_flag("--json", g.json, "Print JSON");
  auto* open = app.add_subcommand("open", "Write a lesson's file to stdout or a file (offline)");
  open->add_option("LESSON", lesson, "COURSE/LESSON, as `kaban lessons` shows it")->required();
  open->add_option("--file", file, "Which of the lesson's files (default: its first)");
  open->add_option("--out", out, "Write to this path instead of stdout");
  auto* status = app.add_subcommand(
      "status", "Server, device id, last sync, unread messages, outbox (offline)");
  status->add_flag("--json", g.json, "Print JSON");

  std::string channel, text, priority = "normal", message_id, duration;
  bool unread_only = false, require_ack = false;
  std::vector<std::string> targets;
  std::optional<int> percent;
  std::optional<double> score;
  auto* channels =
      app.add_subcommand("channels",
                         "List your channels: id, kind, title, unread count, whether you may post "
                         "(offline)");
  channels->add_flag("--json", g.json, "Print JSON");
  auto* messages = app.add_subcommand(
      "messages",
      "Show messages in server order, then your own not yet sent, marked \"pending\" (or "
      "\"not sent: REASON\" if the server refused one); each with its id and its attachments "
      "(\"not downloaded yet\" until a sync brings them; `kaban attachment` writes one out) "
      "(offline)");
  messages->add_option("CHANNEL", channel,
                       "Only this channel: its id as `kaban channels` shows it, or @LOGIN for a "
                       "direct conversation (default: all channels)");
  messages->add_flag("--unread", unread_only, "Only messages you have not read");
  messages->add_flag("--json", g.json, "Print JSON");
  auto* send = app.add_subcommand(
      "send",
      "Write a message; works offline: it shows at once as pending and goes with the next "
      "sync");
  send->add_option("CHANNEL", channel,
                   "A group channel id, @LOGIN for a direct conversation, or an announcement "
                   "channel such as announce:all (if you may post there)")
      ->required();
  send->add_option("TEXT", text, "The message; \"-\" reads it from stdin")->required();
  send->add_option("--priority", priority, "normal, urgent or emergency")
      ->check(CLI::IsMember({"normal", "urgent", "emergency"}))
      ->capture_default_str();
  send->add_flag("--require-ack", require_ack,
                 "Ask readers to acknowledge (announcement channels only)");
  std::vector<std::string> attach;
  send->add_option("--attach", attach,
                   "Attach this file (repeat for more: at most " +
                       std::to_string(protocol::kMaxAttachments) + ", each at most " +
                       format_bytes(protocol::kMaxAttachmentSize) +
                       "); it goes under its own file name and is uploaded with the message")
      ->type_name("FILE")
      ->allow_extra_args(false);
  std::string attachment_name;
  auto* attachment = app.add_subcommand(
      "attachment",
      "Write a message's attachment to stdout or a file, once it is downloaded and its SHA-256 "
      "verified (offline; `kaban messages` lists attachments)");
  attachment->add_option("MESSAGE", message_id, "The message id, as `kaban messages` shows it")
      ->required();
  attachment->add_option("NAME", attachment_name,
                         "Which attachment, by name (may be left out when there is only one)");
  attachment
      ->add_option("--out", out,
                   "Write to this path instead of stdout (it appears only once complete)")
      ->type_name("FILE");
  auto* read = app.add_subcommand(
      "read", "Mark messages read; read receipts go with the next sync (offline)");
  read->add_option("TARGET", targets,
                   "Channels (id or @LOGIN) or message ids (default: every message)");
  auto* ack = app.add_subcommand(
      "ack",
      "Acknowledge an announcement that asks for it; the acknowledgement goes with the next "
      "sync (offline)");
  ack->add_option("MESSAGE", message_id, "The message id, as `kaban messages` shows it")
      ->required();
  auto* outbox = app.add_subcommand(
      "outbox",
      "List what waits for upload, and what the server refused with its reason (offline)");
  outbox->add_flag("--json", g.json, "Print JSON");
  auto* discard = outbox->add_subcommand(
      "discard", "Remove an item the server refused (and the unsent message it left)");
  discard->add_option("ID", message_id, "The item's id, as `kaban outbox` shows it")->required();
  auto* progress = app.add_subcommand(
      "progress",
      "Record progress in a lesson (with --percent), or list your progress per lesson: best "
      "percent, completion, time spent, and what is not uploaded yet (offline)");
  progress->add_option("LESSON", lesson,
                       "COURSE/LESSON, or LESSON alone if only one course on this device has "
                       "it (default: list your progress)");
  progress->add_option("--percent", percent, "How far you are, 0 to 100")
      ->check(CLI::Range(0, 100));
  progress->add_option("--duration", duration, "Time spent this time, e.g. 10m, 1h30m, 90s");
  progress->add_flag("--json", g.json, "Print JSON (the list)");
  auto* complete = app.add_subcommand(
      "complete", "Record that you completed a lesson; uploaded at the next sync (offline)");
  complete->add_option("LESSON", lesson, "COURSE/LESSON, or LESSON alone if unique")->required();
  complete->add_option("--score", score, "Your score, 0 to 1 (e.g. 0.85)")
      ->check(CLI::Range(0.0, 1.0));
  complete->add_option("--duration", duration, "Time spent this time, e.g. 25m");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  if (*enroll)
    return run_enroll(g, line);
  if (*sync_cmd) {
    if (sync_cmd->count("--interval") && !watch_mode) {
      std::cerr << "kaban: sync: --interval goes with --watch\n";
      return kExitUsage;
    }
    return run_sync(g, parallel, watch_mode, interval);
  }
  if (*courses)
    return run_courses(g);
  if (*lessons)
    return run_lessons(g, course);
  if (*open)
    return run_open(g, lesson, file, out);
  if (*status)
    return run_status(g);
  if (*channels)
    return run_channels(g);
  if (*messages)
    return run_messages(g, channel, unread_only);
  if (*send)
    return run_send(g, channel, text, priority, require_ack, attach);
  if (*attachment)
    return run_attachment(g, message_id, attachment_name, out);
  if (*read)
    return run_read(g, targets);
  if (*ack)
    return run_ack(g, message_id);
  if (*discard)
    return run_outbox_discard(g, message_id);
  if (*outbox)
    return run_outbox(g);
  if (*progress) {
    if (lesson.empty()) {
      if (percent || !duration.empty()) {
        std::cerr << "kaban: progress: name the lesson (COURSE/LESSON) to record progress\n";
        return kExitUsage;
      }
      return run_progress_list(g);
    }
    return run_progress(g, lesson, percent, duration);
  }
  if (*complete)
    return run_complete(g, lesson, score, duration);
  std::cout << app.help();
  return kExitOk;
} catch (const std::exception& e) {
  std::cerr << "kaban: internal error: " << e.what() << '\n';
  return kExitFailed;
}
