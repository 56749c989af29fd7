#include "kaban/protocol/channel.hpp"

#include <set>

#include <gtest/gtest.h>

namespace kaban::protocol {
namespace {

using namespace std::string_literals;

TEST(Channel, LoginsAreLowerCaseNamesStartingWithALetterOrDigit) {
  for (const char* good : {"aiko", "a", "7", "k.tanaka", "k_tanaka-2", "0.-_"})
    EXPECT_TRUE(is_valid_login(good)) << good;
  EXPECT_TRUE(is_valid_login(std::string(kMaxLoginSize, 'a')));
  EXPECT_FALSE(is_valid_login(std::string(kMaxLoginSize + 1, 'a')));
  for (const std::string& bad : {""s, "Aiko"s, ".aiko"s, "_aiko"s, "-aiko"s, "ai ko"s, "ai:ko"s,
                                 "aiko\0x"s, "a/b"s, "\xc3\xa9t\xc3\xa9"s, "aiko@x"s})
    EXPECT_FALSE(is_valid_login(bad)) << bad;
}

TEST(Channel, IdsTellTheThreeKindsApart) {
  EXPECT_EQ(channel_kind("night-shift"), ChannelKind::group);
  EXPECT_EQ(channel_kind("dm:aiko:ben"), ChannelKind::direct);
  EXPECT_EQ(channel_kind("announce:all"), ChannelKind::announcement);
  EXPECT_EQ(channel_kind("announce:night-shift"), ChannelKind::announcement);
  EXPECT_EQ(to_string(ChannelKind::group), "group");
  EXPECT_EQ(to_string(ChannelKind::direct), "direct");
  EXPECT_EQ(to_string(ChannelKind::announcement), "announcement");
}

TEST(Channel, MalformedIdsNameNoKind) {
  for (const std::string& bad :
       {""s, "Night"s, ".hidden"s, std::string(65, 'g'), "dm:"s, "dm:aiko"s, "dm:aiko:"s,
        "dm::ben"s, "dm:ben:aiko"s, "dm:aiko:aiko"s, "dm:aiko:ben:carl"s, "dm:Aiko:ben"s,
        "announce:"s, "announce:All"s, "announce:dm:aiko:ben"s, "announce:.x"s, "group:x"s,
        "night\0shift"s, "dm:aiko:ben\n"s}) {
    EXPECT_FALSE(channel_kind(bad)) << bad;
    EXPECT_FALSE(is_valid_channel_id(bad)) << bad;
  }
  EXPECT_TRUE(is_valid_channel_id("dm:"s + std::string(64, 'a') + ":" + std::string(64, 'b')));
}

TEST(Channel, DirectIdsAreTheSameFromEitherSide) {
  EXPECT_EQ(direct_channel_id("ben", "aiko"), "dm:aiko:ben");
  EXPECT_EQ(direct_channel_id("aiko", "ben"), "dm:aiko:ben");
  EXPECT_EQ(direct_channel_id("aiko", "aiko"), "");
  EXPECT_EQ(direct_channel_id("aiko", "Ben"), "");
  EXPECT_EQ(direct_channel_id("", "ben"), "");
  // Byte order, not length order: "a.b" < "ab" because '.' < 'b'.
  EXPECT_EQ(direct_channel_id("ab", "a.b"), "dm:a.b:ab");

  EXPECT_EQ(direct_peer("dm:aiko:ben", "aiko"), "ben");
  EXPECT_EQ(direct_peer("dm:aiko:ben", "ben"), "aiko");
  EXPECT_EQ(direct_peer("dm:aiko:ben", "carl"), "");
  EXPECT_EQ(direct_peer("dm:ben:aiko", "aiko"), "");
  EXPECT_EQ(direct_peer("night-shift", "aiko"), "");
}

TEST(Channel, AnnouncementIdsNameTheirAudience) {
  EXPECT_EQ(announcement_channel_id("all"), "announce:all");
  EXPECT_EQ(announcement_channel_id("night-shift"), "announce:night-shift");
  EXPECT_EQ(announcement_channel_id("Night Shift"), "");
  EXPECT_EQ(announcement_channel_id(""), "");
  EXPECT_EQ(announcement_audience("announce:all"), "all");
  EXPECT_EQ(announcement_audience("announce:night-shift"), "night-shift");
  EXPECT_EQ(announcement_audience("night-shift"), "");
  EXPECT_EQ(announcement_audience("dm:aiko:ben"), "");
  EXPECT_EQ(announcement_audience("announce:"), "");
}

TEST(Channel, PrioritiesRoundTripAndAreOrdered) {
  for (Priority p : {Priority::normal, Priority::urgent, Priority::emergency})
    EXPECT_EQ(parse_priority(to_string(p)), p);
  EXPECT_EQ(to_string(Priority::emergency), "emergency");
  EXPECT_FALSE(parse_priority("Urgent"));
  EXPECT_FALSE(parse_priority(""));
  EXPECT_FALSE(parse_priority("low"));
  EXPECT_LT(Priority::normal, Priority::urgent);
  EXPECT_LT(Priority::urgent, Priority::emergency);
}

TEST(Channel, MessageTextIsUtf8WithoutControlCharacters) {
  for (const std::string& good :
       {""s, "Shelter opens at 18:00."s, "line one\nline two\tend"s, "Caf\xc3\xa9"s,
        "\xe6\x97\xa5\xe6\x9c\xac"s, "\xf0\x9f\x9a\x92 on the way"s, "\xef\xbf\xbd"s,
        "\xf4\x8f\xbf\xbf"s})
    EXPECT_TRUE(is_valid_message_text(good)) << good;
  for (const std::string& bad : {
           "nul\0inside"s, "carriage\rreturn"s, "escape \x1b[31m red"s, "delete\x7f"s,
           "\xc2\x85"s,          // NEL, a C1 control
           "\xc3"s,              // truncated
           "\xe6\x97"s,          // truncated
           "\x80"s,              // stray continuation byte
           "\xc0\xaf"s,          // overlong '/'
           "\xe0\x80\xaf"s,      // overlong '/'
           "\xf0\x80\x80\xaf"s,  // overlong '/'
           "\xc1\xbf"s,          // overlong
           "\xed\xa0\x80"s,      // U+D800, a surrogate
           "\xed\xbf\xbf"s,      // U+DFFF
           "\xf4\x90\x80\x80"s,  // U+110000
           "\xf8\x88\x80\x80\x80"s, "\xff"s,
           "\xc3\x28"s,  // lead byte without continuation
       })
    EXPECT_FALSE(is_valid_message_text(bad)) << testing::PrintToString(bad);
}

TEST(Channel, NewUuidsAreVersion4AndDistinct) {
  std::set<std::string> seen;
  for (int i = 0; i < 200; ++i) {
    const std::string id = new_uuid();
    ASSERT_TRUE(is_valid_uuid(id)) << id;
    EXPECT_EQ(id[14], '4') << id;
    EXPECT_NE(std::string("89ab").find(id[19]), std::string::npos) << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 200u);
}

TEST(Channel, UuidFormIsLowerCaseHexWithFourDashes) {
  EXPECT_TRUE(is_valid_uuid("123e4567-e89b-12d3-a456-426614174000"));
  EXPECT_TRUE(is_valid_uuid("00000000-0000-0000-0000-000000000000"));
  for (const std::string& bad :
       {""s, "123E4567-E89B-12D3-A456-426614174000"s, "123e4567e89b12d3a456426614174000"s,
        "123e4567-e89b-12d3-a456-42661417400"s, "123e4567-e89b-12d3-a456-4266141740000"s,
        "123e4567-e89b-12d3-a456_426614174000"s, "{123e4567-e89b-12d3-a456-426614174000}"s,
        "123e4567-e89b-12d3-a456-42661417400g"s, "123e4567-e89b-12d3-a456-42661417400\0"s,
        "123e456-7e89b-12d3-a456-426614174000"s})
    EXPECT_FALSE(is_valid_uuid(bad)) << bad;
}

TEST(Channel, KindsReadBackAsToStringWritesThem) {
  for (const ChannelKind kind :
       {ChannelKind::group, ChannelKind::direct, ChannelKind::announcement})
    EXPECT_EQ(parse_channel_kind(to_string(kind)), kind);
  EXPECT_EQ(parse_channel_kind("Group"), std::nullopt);
  EXPECT_EQ(parse_channel_kind(""), std::nullopt);
}

}  // namespace
}  // namespace kaban::protocol
