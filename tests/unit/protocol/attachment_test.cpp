#include "kaban/protocol/attachment.hpp"

#include <gtest/gtest.h>

namespace kaban::protocol {
namespace {

constexpr std::uint64_t kMiB = 1024 * 1024;

// A hash that differs per index, so a test can tell chunks apart.
std::string hash(char digit) {
  return std::string(64, digit);
}

// A well-formed attachment of `size` bytes.
Attachment sized(std::uint64_t size) {
  Attachment a;
  a.name = "report.pdf";
  a.media_type = "application/pdf";
  a.size = size;
  a.sha256 = hash('a');
  char digit = '0';
  for (const std::uint64_t chunk : attachment_chunk_sizes(size))
    a.chunks.push_back({hash(digit++), chunk});
  return a;
}

TEST(Attachment, ChunkSizesFollowTheRule) {
  EXPECT_EQ(attachment_chunk_sizes(0), std::vector<std::uint64_t>{});
  EXPECT_EQ(attachment_chunk_sizes(1), std::vector<std::uint64_t>{1});
  EXPECT_EQ(attachment_chunk_sizes(kMiB), std::vector<std::uint64_t>{kMiB});
  EXPECT_EQ(attachment_chunk_sizes(kMiB + 1), (std::vector<std::uint64_t>{kMiB, 1}));
  EXPECT_EQ(attachment_chunk_sizes(4 * kMiB), (std::vector<std::uint64_t>(4, kMiB)));
  EXPECT_EQ(attachment_chunk_sizes(3 * kMiB - 7),
            (std::vector<std::uint64_t>{kMiB, kMiB, kMiB - 7}));
}

TEST(Attachment, WellFormedSizesPassAtTheEdges) {
  for (const std::uint64_t size : {std::uint64_t{1}, kMiB - 1, kMiB, kMiB + 1, 2 * kMiB,
                                   4 * kMiB - 1, std::uint64_t{kMaxAttachmentSize}}) {
    EXPECT_EQ(check_attachment(sized(size)), "") << size;
  }
}

TEST(Attachment, RefusesWhatBreaksARule) {
  struct Case {
    std::string label;
    Attachment a;
    std::string mentions;
  };
  std::vector<Case> cases;
  auto add = [&cases](std::string label, Attachment a, std::string mentions) {
    cases.push_back({std::move(label), std::move(a), std::move(mentions)});
  };
  {
    Attachment a = sized(4 * kMiB + 1);
    add("4 MiB + 1", a, "limit is 4194304");
  }
  {
    Attachment a = sized(kMiB);
    a.size = 0;
    a.chunks.clear();
    add("empty file", a, "is empty");
  }
  {
    Attachment a = sized(kMiB + 1);
    a.chunks = {{hash('1'), kMiB + 1}};
    add("one chunk of 1 MiB + 1", a, "at most 1048576");
  }
  {
    Attachment a = sized(kMiB);
    a.chunks = {{hash('1'), kMiB / 2}, {hash('2'), kMiB / 2}};
    add("short chunk before the last", a, "chunk 1 is 524288 bytes");
  }
  {
    Attachment a = sized(kMiB + 10);
    a.chunks[1].size = 9;
    add("wrong sum", a, "add up to 1048585 bytes, not 1048586");
  }
  {
    Attachment a = sized(10);
    a.chunks.push_back({hash('9'), 0});
    add("empty chunk", a, "chunk 2 is empty");
  }
  {
    Attachment a = sized(10);
    a.chunks.clear();
    add("no chunks", a, "no chunks");
  }
  {
    Attachment a = sized(10);
    a.sha256 = std::string(64, 'A');
    add("upper-case file hash", a, "sha256");
  }
  {
    Attachment a = sized(10);
    a.sha256 = hash('a').substr(1);
    add("short file hash", a, "sha256");
  }
  {
    Attachment a = sized(10);
    a.chunks[0].sha256 = std::string(63, '0') + "g";
    add("bad chunk hex", a, "chunk 1 has a sha256");
  }
  for (const std::string_view type :
       {"pdf", "/pdf", "application/", "app lication/pdf", "image/\x01", "image/j\xc3\xa9"}) {
    Attachment a = sized(10);
    a.media_type = type;
    add("media type " + std::string(type), a, "media type");
  }
  {
    Attachment a = sized(10);
    a.media_type = "text/" + std::string(kMaxMediaType - 4, 'x');
    add("long media type", a, "media type");
  }
  {
    Attachment a = sized(10);
    a.name = "..";
    add("name ..", a, "name");
  }
  for (const Case& c : cases) {
    const std::string problem = check_attachment(c.a);
    EXPECT_NE(problem, "") << c.label;
    EXPECT_NE(problem.find(c.mentions), std::string::npos) << c.label << "\n" << problem;
  }
}

TEST(Attachment, SentencesNameTheAttachmentOnlyByAValidName) {
  Attachment a = sized(10);
  a.size = 11;
  EXPECT_NE(check_attachment(a).find("\"report.pdf\""), std::string::npos) << check_attachment(a);
  a = sized(10);
  a.name = "a/b";
  EXPECT_EQ(check_attachment(a).find("a/b"), std::string::npos) << check_attachment(a);
}

TEST(Attachment, MediaTypeMayBeEmptyOrCarryParameters) {
  for (const std::string_view type :
       {"", "image/jpeg", "text/plain; charset=utf-8", "application/vnd.ms-excel"}) {
    Attachment a = sized(10);
    a.media_type = type;
    EXPECT_EQ(check_attachment(a), "") << type;
  }
  Attachment a = sized(10);
  a.media_type = "text/" + std::string(kMaxMediaType - 5, 'x');
  EXPECT_EQ(check_attachment(a), "");
}

TEST(Attachment, NamesAreFileNamesOnly) {
  for (const std::string_view name : {"report.pdf", "a", ".profile", "...", "photo 2026-11-23.jpg",
                                      "caf\xc3\xa9.txt", "\xe6\x97\xa5\xe6\x9c\xac.png"}) {
    EXPECT_TRUE(is_valid_attachment_name(name)) << name;
  }
  EXPECT_TRUE(is_valid_attachment_name(std::string(kMaxAttachmentName, 'n')));
  for (const std::string& name :
       {std::string(), std::string("."), std::string(".."), std::string("a/b"), std::string("a\\b"),
        std::string("c:x"), std::string("/etc"), std::string("tab\there"),
        std::string("line\nbreak"), std::string("bell\x07"), std::string("nul\0x", 5),
        std::string("del\x7f"), std::string("c1\xc2\x85"), std::string("bad\xc3"),
        std::string("\xff"), std::string(kMaxAttachmentName + 1, 'n')}) {
    EXPECT_FALSE(is_valid_attachment_name(name)) << name;
  }
}

}  // namespace
}  // namespace kaban::protocol
