#include "kaban/agent/attachments.hpp"

#include <random>

#include <SQLiteCpp/Statement.h>

#include "kaban/agent/error.hpp"
#include "kaban/agent/messages.hpp"
#include "kaban/agent/outbox.hpp"
#include "kaban/crypto/sha256.hpp"
#include "message_lane_support.hpp"

namespace kaban::agent {
namespace {

using namespace kaban::agent::testing;
using protocol::OutboxStatus;
using protocol::Priority;

constexpr std::size_t kChunk = protocol::kAttachmentChunkSize;

std::string hex_sha256(std::string_view bytes) {
  return crypto::to_hex(crypto::sha256(crypto::as_bytes(bytes)));
}

// Bytes that differ from seed to seed, so files and chunks have hashes of their own.
std::string bytes_of(std::size_t size, unsigned seed) {
  std::mt19937 gen(seed);
  std::string bytes(size, '\0');
  for (char& c : bytes)
    c = static_cast<char>(gen());
  return bytes;
}

// The attachment as the server describes it, computed here without the agent's code: chunks of
// kAttachmentChunkSize, the last one shorter, each hashed, and the whole file hashed.
protocol::Attachment described(const std::string& name, const std::string& bytes,
                               const std::string& media_type = "application/octet-stream") {
  protocol::Attachment a;
  a.name = name;
  a.media_type = media_type;
  a.size = bytes.size();
  a.sha256 = hex_sha256(bytes);
  for (std::size_t offset = 0; offset < bytes.size(); offset += kChunk) {
    const std::string_view piece = std::string_view(bytes).substr(offset, kChunk);
    a.chunks.push_back({hex_sha256(piece), piece.size()});
  }
  return a;
}

std::string_view chunk_of(const std::string& bytes, std::size_t index) {
  return std::string_view(bytes).substr(index * kChunk, kChunk);
}

class AttachmentsTest : public StoreFixture {
 protected:
  Messages me() { return Messages(store(), "aiko", "Aiko Tanaka"); }
  Attachments attachments() { return Attachments(store()); }

  void apply(std::vector<protocol::InboxChange> changes) {
    auto applied = me().apply_inbox(changes, "", kNow);
    ASSERT_TRUE(applied) << applied.error().message();
  }

  protocol::InboxChange message_with(const std::string& id, std::int64_t seq,
                                     const std::string& channel,
                                     std::vector<protocol::Attachment> attached) {
    protocol::InboxChange change = message(id, seq, channel, "ken", "see attached");
    change.message->attachments = std::move(attached);
    return change;
  }

  std::vector<MessageView> messages() {
    auto l = me().list();
    EXPECT_TRUE(l) << l.error().message();
    return l ? l.value() : std::vector<MessageView>{};
  }

  std::vector<AttachmentView> listed(const std::string& message_id) {
    auto l = attachments().list(message_id);
    EXPECT_TRUE(l) << l.error().message();
    return l ? l.value() : std::vector<AttachmentView>{};
  }

  protocol::OutboxUpload pending() {
    auto b = Outbox(store()).next_batch();
    EXPECT_TRUE(b);
    return b ? b.value() : protocol::OutboxUpload{};
  }

  // Stores every chunk of `bytes` as if the sync had fetched them.
  void receive(const std::string& bytes) {
    for (std::size_t i = 0; i * kChunk < bytes.size(); ++i) {
      const std::string_view piece = chunk_of(bytes, i);
      ASSERT_TRUE(attachments().put_chunk(hex_sha256(piece), piece));
    }
  }

  std::int64_t chunks_held() { return count("SELECT count(*) FROM attachment_chunks"); }
};

TEST_F(AttachmentsTest, SendStoresTheChunksAndTheOutboxItemCarriesTheirHashesAndSizes) {
  apply({joined("team-a")});
  const std::string report = bytes_of(kChunk + 500 * 1024, 1);
  const std::string notes = "Key is under the mat.\n";
  const std::vector<AttachmentFile> files{{"report.pdf", "application/pdf", report},
                                          {"notes.txt", "text/plain", notes}};
  auto sent = me().send("team-a", "The shelter plan", Priority::normal, false, kNow, files);
  ASSERT_TRUE(sent) << sent.error().message();
  ASSERT_EQ(sent.value().attachments.size(), 2u);
  EXPECT_TRUE(sent.value().attachments[0].downloaded);

  reopen();  // what goes up is what the store kept, not what send() had in memory
  const auto batch = pending();
  ASSERT_EQ(batch.items.size(), 1u);
  ASSERT_TRUE(batch.items[0].message);
  const auto& attached = batch.items[0].message->attachments;
  ASSERT_EQ(attached.size(), 2u);
  EXPECT_EQ(attached[0], described("report.pdf", report, "application/pdf"));
  EXPECT_EQ(attached[1], described("notes.txt", notes, "text/plain"));
  ASSERT_EQ(attached[0].chunks.size(), 2u);
  EXPECT_EQ(attached[0].chunks[0].size, kChunk);
  EXPECT_EQ(attached[0].chunks[1].size, 500u * 1024);
  EXPECT_EQ(attached[0].chunks[1].sha256, hex_sha256(chunk_of(report, 1)));
  EXPECT_EQ(attached[0].sha256, hex_sha256(report));
  for (const protocol::Attachment& a : attached)
    EXPECT_EQ(protocol::check_attachment(a), "");

  // The wire form carries them too.
  std::string why;
  auto parsed = protocol::parse_outbox_upload(protocol::to_json(batch), &why);
  ASSERT_TRUE(parsed) << why;
  EXPECT_EQ(parsed.value().items[0].message->attachments, attached);

  EXPECT_EQ(chunks_held(), 3);
  auto first = attachments().chunk(attached[0].chunks[0].sha256);
  ASSERT_TRUE(first);
  EXPECT_EQ(first.value(), chunk_of(report, 0));
  auto shown = messages();
  ASSERT_EQ(shown.size(), 1u);
  ASSERT_EQ(shown[0].attachments.size(), 2u);
  EXPECT_EQ(shown[0].attachments[0].name, "report.pdf");
  EXPECT_EQ(shown[0].attachments[0].size, report.size());
  EXPECT_EQ(shown[0].attachments[0].sha256, hex_sha256(report));
  EXPECT_TRUE(shown[0].attachments[0].downloaded) << "one's own files are on the device";
  EXPECT_EQ(attachments().read(sent.value().id, "report.pdf").value(), report);
  EXPECT_EQ(attachments().read(sent.value().id, "notes.txt").value(), notes);
  EXPECT_EQ(attachments().missing_chunks().value().size(), 0u);
}

TEST_F(AttachmentsTest, AMessageWithoutAttachmentsIsSentAsBefore) {
  apply({joined("team-a")});
  auto sent = me().send("team-a", "plain", Priority::normal, false, kNow);
  ASSERT_TRUE(sent);
  EXPECT_TRUE(sent.value().attachments.empty());
  EXPECT_TRUE(pending().items[0].message->attachments.empty());
  EXPECT_EQ(protocol::to_json(pending()).find("attachments"), std::string::npos);
  EXPECT_TRUE(listed(sent.value().id).empty());
}

TEST_F(AttachmentsTest, LimitsAreRefusedAndNothingIsStored) {
  apply({joined("team-a")});
  const auto refused = [&](std::vector<AttachmentFile> files) {
    auto sent = me().send("team-a", "files", Priority::normal, false, kNow, files);
    return sent ? std::error_code() : sent.error();
  };
  const std::error_code invalid = errc::invalid_input;
  std::vector<AttachmentFile> too_many;
  for (std::size_t i = 0; i <= protocol::kMaxAttachments; ++i)
    too_many.push_back({"f" + std::to_string(i) + ".txt", "text/plain", "x"});
  EXPECT_EQ(refused(too_many), invalid);
  EXPECT_EQ(refused({{"empty.txt", "text/plain", ""}}), invalid);
  EXPECT_EQ(refused({{"big.bin", "", std::string(protocol::kMaxAttachmentSize + 1, 'x')}}),
            invalid);
  EXPECT_EQ(refused({{"dir/name.txt", "", "x"}}), invalid);
  EXPECT_EQ(refused({{"..", "", "x"}}), invalid);
  EXPECT_EQ(refused({{"", "", "x"}}), invalid);
  EXPECT_EQ(refused({{"bell\a.txt", "", "x"}}), invalid);
  EXPECT_EQ(refused({{"a.txt", "", "x"}, {"a.txt", "", "y"}}), invalid) << "names pick them";
  EXPECT_EQ(refused({{"a.txt", "not a media type", "x"}}), invalid);
  EXPECT_EQ(count("SELECT count(*) FROM messages"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM message_attachments"), 0);
  EXPECT_EQ(chunks_held(), 0);
  EXPECT_TRUE(pending().items.empty());

  // The limits themselves are allowed: kMaxAttachments files, one of kMaxAttachmentSize.
  std::vector<AttachmentFile> most;
  most.push_back({"largest.bin", "", bytes_of(protocol::kMaxAttachmentSize, 2)});
  for (std::size_t i = 1; i < protocol::kMaxAttachments; ++i)
    most.push_back({"f" + std::to_string(i) + ".txt", "text/plain", "x" + std::to_string(i)});
  auto sent = me().send("team-a", "files", Priority::normal, false, kNow, most);
  ASSERT_TRUE(sent) << sent.error().message();
  EXPECT_EQ(pending().items[0].message->attachments[0].chunks.size(),
            protocol::kMaxAttachmentSize / kChunk);
}

TEST_F(AttachmentsTest, InboxAttachmentsAreReadableOnceEveryChunkArrived) {
  const std::string photo = bytes_of(2 * kChunk + 10, 3);
  const std::string id = protocol::new_uuid();
  apply({joined("team-a"), message_with(id, 1, "team-a", {described("photo.jpg", photo)})});

  auto shown = messages();
  ASSERT_EQ(shown.size(), 1u);
  ASSERT_EQ(shown[0].attachments.size(), 1u);
  EXPECT_EQ(shown[0].attachments[0].name, "photo.jpg");
  EXPECT_EQ(shown[0].attachments[0].size, photo.size());
  EXPECT_FALSE(shown[0].attachments[0].downloaded);
  EXPECT_EQ(attachments().read(id, "photo.jpg").error(), errc::not_found) << "not downloaded";

  auto missing = attachments().missing_chunks();
  ASSERT_TRUE(missing);
  ASSERT_EQ(missing.value().size(), 3u);
  EXPECT_EQ(missing.value()[0].sha256, hex_sha256(chunk_of(photo, 0)));
  EXPECT_EQ(missing.value()[2].size, 10u);

  // Bytes that do not match, and a chunk nothing uses, are refused.
  EXPECT_EQ(attachments().put_chunk(hex_sha256(chunk_of(photo, 0)), chunk_of(photo, 1)).error(),
            errc::content_invalid);
  EXPECT_EQ(attachments().put_chunk(hex_sha256("stray"), "stray").error(), errc::content_invalid);
  EXPECT_EQ(chunks_held(), 0);

  EXPECT_EQ(attachments().put_chunk(hex_sha256(chunk_of(photo, 0)), chunk_of(photo, 0)).value(),
            0u);
  EXPECT_EQ(attachments().put_chunk(hex_sha256(chunk_of(photo, 2)), chunk_of(photo, 2)).value(),
            0u);
  EXPECT_FALSE(listed(id)[0].downloaded);
  EXPECT_EQ(attachments().put_chunk(hex_sha256(chunk_of(photo, 1)), chunk_of(photo, 1)).value(), 1u)
      << "the last chunk completes the attachment";
  EXPECT_EQ(attachments().put_chunk(hex_sha256(chunk_of(photo, 1)), chunk_of(photo, 1)).value(), 0u)
      << "held already";
  EXPECT_TRUE(attachments().missing_chunks().value().empty());
  EXPECT_TRUE(listed(id)[0].downloaded);
  reopen();
  auto read = attachments().read(id, "");
  ASSERT_TRUE(read) << read.error().message();
  EXPECT_EQ(read.value(), photo) << "byte-identical, and the only attachment needs no name";
}

TEST_F(AttachmentsTest, AChunkSharedByTwoMessagesIsFetchedOnceAndCompletesBoth) {
  const std::string map = "the map";
  const std::string a = protocol::new_uuid(), b = protocol::new_uuid();
  apply({joined("team-a"), joined("team-b"),
         message_with(a, 1, "team-a", {described("map.png", map, "image/png")}),
         message_with(b, 2, "team-b", {described("same-map.png", map, "image/png")})});
  EXPECT_EQ(attachments().missing_chunks().value().size(), 1u);
  EXPECT_EQ(attachments().put_chunk(hex_sha256(map), map).value(), 2u);
  EXPECT_EQ(attachments().read(b, "same-map.png").value(), map);
}

TEST_F(AttachmentsTest, ReadingNamesTheAttachment) {
  const std::string id = protocol::new_uuid();
  apply({joined("team-a"),
         message_with(id, 1, "team-a", {described("a.txt", "aaa"), described("b.txt", "bbb")})});
  receive("aaa");
  receive("bbb");
  EXPECT_EQ(attachments().read(id, "b.txt").value(), "bbb");
  EXPECT_EQ(attachments().read(id, "").error(), errc::invalid_input) << "which of the two?";
  EXPECT_EQ(attachments().read(id, "c.txt").error(), errc::not_found);
  EXPECT_EQ(attachments().read(protocol::new_uuid(), "a.txt").error(), errc::not_found);
  EXPECT_EQ(attachments().list(protocol::new_uuid()).error(), errc::not_found);
  const auto both = listed(id);
  ASSERT_EQ(both.size(), 2u);
  EXPECT_EQ(both[0].name, "a.txt");
  EXPECT_EQ(both[1].name, "b.txt");
}

TEST_F(AttachmentsTest, TheWholeFileHashRefusesATamperedChunk) {
  const std::string file = bytes_of(kChunk + 100, 4);
  const std::string id = protocol::new_uuid();
  apply({joined("team-a"), message_with(id, 1, "team-a", {described("plan.pdf", file)})});
  receive(file);
  ASSERT_EQ(attachments().read(id, "plan.pdf").value(), file);

  // The stored bytes of one chunk change (same length): the file no longer verifies.
  SQLite::Statement tamper(store().db(), "UPDATE attachment_chunks SET data = ? WHERE hash = ?");
  const std::string other = bytes_of(100, 5);
  tamper.bind(1, other.data(), static_cast<int>(other.size()));
  tamper.bind(2, hex_sha256(chunk_of(file, 1)));
  ASSERT_EQ(tamper.exec(), 1);
  EXPECT_EQ(attachments().read(id, "plan.pdf").error(), errc::content_invalid);

  // A sender whose file hash does not match its own chunks: never handed out either.
  protocol::Attachment lying = described("lie.txt", "truth");
  lying.sha256 = hex_sha256("lies!");
  const std::string liar = protocol::new_uuid();
  apply({message_with(liar, 2, "team-a", {lying})});
  receive("truth");
  EXPECT_TRUE(listed(liar)[0].downloaded);
  EXPECT_EQ(attachments().read(liar, "lie.txt").error(), errc::content_invalid);
}

TEST_F(AttachmentsTest, LeavingAChannelDropsItsAttachmentsAndChunksNoOtherMessageUses) {
  const std::string only_a = bytes_of(300, 6), shared = bytes_of(200, 7), mine = bytes_of(50, 8);
  const std::string in_a = protocol::new_uuid(), in_b = protocol::new_uuid();
  apply({joined("team-a"), joined("team-b"),
         message_with(in_a, 1, "team-a", {described("a.bin", only_a), described("s.bin", shared)}),
         message_with(in_b, 2, "team-b", {described("s.bin", shared)})});
  receive(only_a);
  receive(shared);
  auto own = me().send("team-a", "mine, unsent", Priority::normal, false, kNow,
                       std::vector<AttachmentFile>{{"mine.bin", "", mine}});
  ASSERT_TRUE(own);
  ASSERT_EQ(chunks_held(), 3);

  apply({left("team-a")});
  EXPECT_EQ(attachments().list(in_a).error(), errc::not_found);
  EXPECT_EQ(count("SELECT count(*) FROM message_attachments WHERE message_id = '" + in_a + "'"), 0);
  EXPECT_EQ(
      count("SELECT count(*) FROM message_attachment_chunks WHERE message_id = '" + in_a + "'"), 0);
  EXPECT_EQ(chunks_held(), 2) << "the shared chunk and the unsent message's stay";
  EXPECT_EQ(attachments().read(in_b, "s.bin").value(), shared);
  EXPECT_EQ(attachments().read(own.value().id, "mine.bin").value(), mine)
      << "the unsent message stays until the server answers for it, and so do its files";
  EXPECT_EQ(attachments().chunk(hex_sha256(only_a)).error(), errc::not_found);

  // Refused and discarded: the last message using that chunk is gone, and so is the chunk.
  const auto upload = pending();
  protocol::OutboxAnswer answer;
  for (const auto& item : upload.items)
    answer.results.push_back(
        item.id == own.value().id
            ? result(item, OutboxStatus::rejected, "not_a_member", "You were removed from team-a.")
            : result(item, OutboxStatus::accepted));
  ASSERT_TRUE(Outbox(store()).apply_answer(upload, answer));
  EXPECT_EQ(chunks_held(), 2) << "a refused message keeps its files until it is discarded";
  ASSERT_TRUE(Outbox(store()).discard(own.value().id));
  EXPECT_EQ(chunks_held(), 1);
  EXPECT_EQ(count("SELECT count(*) FROM message_attachments"), 1);
}

TEST_F(AttachmentsTest, TheEchoOfOnesOwnMessageKeepsItsFiles) {
  apply({joined("team-a")});
  const std::string file = bytes_of(kChunk + 1, 9);
  auto sent = me().send("team-a", "with file", Priority::normal, false, kNow,
                        std::vector<AttachmentFile>{{"f.bin", "", file}});
  ASSERT_TRUE(sent);
  const auto upload = pending();
  ASSERT_TRUE(Outbox(store()).apply_answer(upload, answer_all(upload, OutboxStatus::accepted)));
  protocol::InboxChange echo = message(sent.value().id, 7, "team-a", "aiko", "with file");
  echo.message->attachments = upload.items[0].message->attachments;
  apply({echo});
  EXPECT_EQ(chunks_held(), 2);
  const auto shown = messages();
  ASSERT_EQ(shown.size(), 1u);
  ASSERT_EQ(shown[0].attachments.size(), 1u);
  EXPECT_TRUE(shown[0].attachments[0].downloaded);
  EXPECT_EQ(attachments().read(sent.value().id, "f.bin").value(), file);
}

TEST_F(AttachmentsTest, AnAttachmentThatDoesNotCheckIsNotStored) {
  protocol::Attachment broken = described("x.txt", "xyz");
  broken.chunks[0].size = 2;  // chunks no longer add up to the size
  const std::string id = protocol::new_uuid();
  apply({joined("team-a"), message_with(id, 1, "team-a", {broken, described("ok.txt", "ok")})});
  const auto views = listed(id);
  ASSERT_EQ(views.size(), 1u);
  EXPECT_EQ(views[0].name, "ok.txt");
}

}  // namespace
}  // namespace kaban::agent
