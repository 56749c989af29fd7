#include "kaban/server/database.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>

#include "kaban/server/error.hpp"

namespace kaban::server {
namespace fs = std::filesystem;
namespace {

// Append only: a released migration never changes, a new one gets the next version.
constexpr schema::Migration kServerMigrations[] = {
    {1, R"sql(
      -- Small facts about this server (its epoch).
      CREATE TABLE server_meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
      ) WITHOUT ROWID;

      CREATE TABLE users (
        login      TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        created_at INTEGER NOT NULL
      ) WITHOUT ROWID;

      -- Only the SHA-256 of the normalised code is kept: the database never holds a code that
      -- could enroll a device.
      CREATE TABLE enroll_codes (
        code_hash  BLOB PRIMARY KEY,
        login      TEXT NOT NULL REFERENCES users(login),
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at    INTEGER,
        device_id  TEXT
      ) WITHOUT ROWID;
      CREATE INDEX enroll_codes_login ON enroll_codes(login);

      CREATE TABLE devices (
        id              TEXT PRIMARY KEY,  -- hex SHA-256 of the certificate DER
        login           TEXT NOT NULL REFERENCES users(login),
        serial          TEXT NOT NULL,
        certificate_pem TEXT NOT NULL,
        platform        TEXT NOT NULL,
        os_version      TEXT NOT NULL,
        model           TEXT NOT NULL,
        name            TEXT NOT NULL,
        agent_version   TEXT NOT NULL,
        enrolled_at     INTEGER NOT NULL,
        last_checkin_at INTEGER NOT NULL,
        revoked_at      INTEGER
      ) WITHOUT ROWID;
      CREATE INDEX devices_login ON devices(login);

      CREATE TABLE courses (
        id         TEXT PRIMARY KEY,
        title      TEXT NOT NULL,
        audience   TEXT NOT NULL DEFAULT 'all',
        created_at INTEGER NOT NULL
      ) WITHOUT ROWID;

      -- seq orders the change feed across all courses.
      CREATE TABLE course_versions (
        course_id    TEXT NOT NULL REFERENCES courses(id),
        version      INTEGER NOT NULL,
        manifest     TEXT NOT NULL,
        signature    TEXT NOT NULL,
        published_at INTEGER NOT NULL,
        seq          INTEGER UNIQUE NOT NULL,
        file_count   INTEGER NOT NULL,
        total_bytes  INTEGER NOT NULL,
        PRIMARY KEY (course_id, version)
      ) WITHOUT ROWID;

      CREATE TABLE chunks (
        hash TEXT PRIMARY KEY,  -- 64 lower-case hex digits; the file is chunks/<2 hex>/<hash>
        size INTEGER NOT NULL
      ) WITHOUT ROWID;

      CREATE TABLE version_chunks (
        course_id TEXT NOT NULL,
        version   INTEGER NOT NULL,
        hash      TEXT NOT NULL REFERENCES chunks(hash),
        PRIMARY KEY (course_id, version, hash),
        FOREIGN KEY (course_id, version) REFERENCES course_versions(course_id, version)
      ) WITHOUT ROWID;
      CREATE INDEX version_chunks_hash ON version_chunks(hash);
    )sql"},
    {2, R"sql(
      -- Named sequences. 'inbox' numbers every change of the message lane (messages, memberships,
      -- read and acknowledgement marks, learning statements); it is advanced inside the write
      -- transaction that makes the change, so sequence order is commit order.
      CREATE TABLE counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
      ) WITHOUT ROWID;
      INSERT INTO counters(name, value) VALUES ('inbox', 0);

      CREATE TABLE channels (
        id         TEXT PRIMARY KEY,  -- see protocol/channel.hpp: GROUP, dm:A:B, announce:AUDIENCE
        kind       TEXT NOT NULL CHECK (kind IN ('group', 'direct', 'announcement')),
        title      TEXT NOT NULL,
        audience   TEXT,              -- announcement: 'all' or a group channel id; else NULL
        created_at INTEGER NOT NULL,
        CHECK ((kind = 'announcement') = (audience IS NOT NULL))
      ) WITHOUT ROWID;
      INSERT INTO channels(id, kind, title, audience, created_at)
        VALUES ('announce:all', 'announcement', 'Announcements', 'all',
                CAST(strftime('%s', 'now') AS INTEGER));

      -- Who belongs to a group or direct channel (role 'member') and who may post to an
      -- announcement channel (role 'sender'). A removal keeps the row with removed = 1; every
      -- change takes a new inbox seq, which is how the person's devices learn of it.
      CREATE TABLE channel_members (
        channel_id TEXT NOT NULL REFERENCES channels(id),
        login      TEXT NOT NULL REFERENCES users(login),
        role       TEXT NOT NULL CHECK (role IN ('member', 'sender')),
        removed    INTEGER NOT NULL DEFAULT 0 CHECK (removed IN (0, 1)),
        seq        INTEGER UNIQUE NOT NULL,
        changed_at INTEGER NOT NULL,
        PRIMARY KEY (channel_id, login, role)
      ) WITHOUT ROWID;
      CREATE INDEX channel_members_login ON channel_members(login, seq);

      -- One row per message whatever its audience. seq is the rowid: the feed reads messages in
      -- seq order and bodies are up to 8 KiB, too large for a WITHOUT ROWID table.
      CREATE TABLE messages (
        seq         INTEGER PRIMARY KEY,
        id          TEXT UNIQUE NOT NULL,  -- the sender's UUID
        channel_id  TEXT NOT NULL REFERENCES channels(id),
        sender      TEXT NOT NULL,         -- login; '' for IT (admin announce)
        sender_name TEXT NOT NULL,
        body        TEXT NOT NULL,
        priority    INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 2),
        require_ack INTEGER NOT NULL DEFAULT 0 CHECK (require_ack IN (0, 1)),
        created_at  INTEGER NOT NULL,      -- the sender's device time
        accepted_at INTEGER NOT NULL,
        device_id   TEXT,                  -- NULL for admin announce
        device_seq  INTEGER
      );
      CREATE INDEX messages_channel ON messages(channel_id, seq);
      CREATE INDEX messages_channel_urgent ON messages(channel_id, seq) WHERE priority >= 1;

      -- A person's marks on a message. seq is set (anew) only when read_at or acked_at is first
      -- set: those marks travel to the person's other devices; delivery does not.
      CREATE TABLE receipts (
        message_id   TEXT NOT NULL REFERENCES messages(id),
        login        TEXT NOT NULL REFERENCES users(login),
        delivered_at INTEGER,
        read_at      INTEGER,
        acked_at     INTEGER,
        seq          INTEGER UNIQUE,
        PRIMARY KEY (message_id, login)
      ) WITHOUT ROWID;
      CREATE INDEX receipts_login ON receipts(login, seq);

      -- xAPI statements as received (canonical JSON), with the facts the reports read.
      CREATE TABLE statements (
        seq              INTEGER PRIMARY KEY,
        id               TEXT UNIQUE NOT NULL,
        login            TEXT NOT NULL REFERENCES users(login),
        device_id        TEXT NOT NULL,
        statement        TEXT NOT NULL,
        verb             TEXT NOT NULL,
        object_id        TEXT NOT NULL,
        course_id        TEXT NOT NULL,  -- '' for an activity that is not a Kaban course
        lesson_id        TEXT NOT NULL,  -- '' for the course itself
        timestamp        INTEGER NOT NULL,
        progress         INTEGER,
        completion       INTEGER,
        success          INTEGER,
        score            REAL,
        duration_seconds INTEGER,
        stored_at        INTEGER NOT NULL
      );
      CREATE INDEX statements_login ON statements(login, seq);
      CREATE INDEX statements_course ON statements(course_id, login);
      CREATE INDEX statements_stored ON statements(stored_at, seq);

      -- What the server answered for each outbox item of each device: the at-most-once record.
      CREATE TABLE outbox_log (
        device_id   TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        item_id     TEXT UNIQUE NOT NULL,
        kind        TEXT NOT NULL,
        status      TEXT NOT NULL CHECK (status IN ('accepted', 'duplicate', 'rejected')),
        code        TEXT NOT NULL,
        reason      TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (device_id, seq)
      ) WITHOUT ROWID;
    )sql"},
    {3, R"sql(
      -- Chunks devices uploaded for message attachments (PUT /v1/chunks/<hash>). The file is
      -- chunks/ab/<hash>, beside course chunks; device_id is the device that uploaded it first,
      -- uploaded_at when it was last uploaded.
      CREATE TABLE uploaded_chunks (
        hash        TEXT PRIMARY KEY,  -- 64 lower-case hex digits
        size        INTEGER NOT NULL,
        device_id   TEXT NOT NULL,
        uploaded_at INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE INDEX uploaded_chunks_device ON uploaded_chunks(device_id);
      CREATE INDEX uploaded_chunks_age ON uploaded_chunks(uploaded_at);

      -- A message's attached files, in the order the sender gave them (ordinal from 0).
      CREATE TABLE message_attachments (
        message_id TEXT NOT NULL REFERENCES messages(id),
        ordinal    INTEGER NOT NULL,
        name       TEXT NOT NULL,
        media_type TEXT NOT NULL,
        size       INTEGER NOT NULL,
        sha256     TEXT NOT NULL,
        PRIMARY KEY (message_id, ordinal)
      ) WITHOUT ROWID;

      -- Each attachment's chunks in order (chunk_index from 0). hash is a course chunk or an
      -- uploaded one; the index answers "may this caller fetch this chunk?" and "does any
      -- message use this upload?".
      CREATE TABLE attachment_chunks (
        message_id  TEXT NOT NULL,
        ordinal     INTEGER NOT NULL,
        chunk_index INTEGER NOT NULL,
        hash        TEXT NOT NULL,
        size        INTEGER NOT NULL,
        PRIMARY KEY (message_id, ordinal, chunk_index),
        FOREIGN KEY (message_id, ordinal) REFERENCES message_attachments(message_id, ordinal)
      ) WITHOUT ROWID;
      CREATE INDEX attachment_chunks_hash ON attachment_chunks(hash);
    )sql"},
    {4, R"sql(
      -- Device policy and compliance (docs/policy.md). A group is a group channel (channels with
      -- kind 'group'); its members are its current channel members.

      -- 'policy' numbers every change that may alter some device's effective policy (a policy
      -- set or removed, a group membership changed); a device's DevicePolicy.version is its value.
      INSERT INTO counters(name, value) VALUES ('policy', 1);

      -- Policy files as IT set them (canonical JSON of the given settings). audience is 'default'
      -- (everyone) or a group channel id. revision is the 'policy' counter when it was set.
      CREATE TABLE policies (
        audience   TEXT PRIMARY KEY,
        document   TEXT NOT NULL,
        revision   INTEGER NOT NULL,
        set_at     INTEGER NOT NULL
      ) WITHOUT ROWID;

      -- Who may see a course: 'all' or group channel ids. Replaces courses.audience (kept, unused).
      CREATE TABLE course_assignments (
        course_id TEXT NOT NULL REFERENCES courses(id),
        audience  TEXT NOT NULL,
        PRIMARY KEY (course_id, audience)
      ) WITHOUT ROWID;
      CREATE INDEX course_assignments_audience ON course_assignments(audience);
      INSERT INTO course_assignments(course_id, audience) SELECT id, audience FROM courses;

      -- Every certificate issued to a device: the first (whose fingerprint is the device id) and
      -- each renewal. A connection is identified by the fingerprint of the certificate it shows.
      CREATE TABLE device_certificates (
        fingerprint TEXT PRIMARY KEY,  -- hex SHA-256 of the DER
        device_id   TEXT NOT NULL REFERENCES devices(id),
        serial      TEXT NOT NULL,
        issued_at   INTEGER NOT NULL,
        not_after   INTEGER            -- NULL for certificates issued before this table
      ) WITHOUT ROWID;
      CREATE INDEX device_certificates_device ON device_certificates(device_id);
      INSERT INTO device_certificates(fingerprint, device_id, serial, issued_at, not_after)
        SELECT id, id, serial, enrolled_at, NULL FROM devices;

      -- The compliance state of each device, as of its last check-in.
      ALTER TABLE devices ADD COLUMN verdict TEXT NOT NULL DEFAULT 'compliant';
      ALTER TABLE devices ADD COLUMN reasons TEXT NOT NULL DEFAULT '[]';   -- JSON array
      ALTER TABLE devices ADD COLUMN posture TEXT NOT NULL DEFAULT '{}';   -- JSON object
      ALTER TABLE devices ADD COLUMN policy_version INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE devices ADD COLUMN block_after INTEGER NOT NULL DEFAULT 0;  -- 0 = never
      ALTER TABLE devices ADD COLUMN wipe_after INTEGER NOT NULL DEFAULT 0;   -- 0 = never
      ALTER TABLE devices ADD COLUMN clock_skew INTEGER NOT NULL DEFAULT 0;   -- device - server, s
      ALTER TABLE devices ADD COLUMN certificate_not_after INTEGER;
      ALTER TABLE devices ADD COLUMN report_token_hash TEXT;   -- SHA-256 hex, see DeviceEvent
      ALTER TABLE devices ADD COLUMN unlock_code TEXT;         -- shown by admin device unlock
      ALTER TABLE devices ADD COLUMN wiped_at INTEGER;         -- when the device reported a wipe
      ALTER TABLE devices ADD COLUMN wipe_reason TEXT;
      ALTER TABLE devices ADD COLUMN locked_at INTEGER;        -- reported locked, not unlocked
      ALTER TABLE devices ADD COLUMN lock_reason TEXT;

      -- IT's queued commands. A command is sent at every check-in until the device reports it
      -- done (done_at); cancelled ones are not sent.
      CREATE TABLE device_commands (
        id           INTEGER PRIMARY KEY,
        device_id    TEXT NOT NULL REFERENCES devices(id),
        kind         TEXT NOT NULL CHECK (kind IN ('wipe', 'lock')),
        requested_by TEXT NOT NULL,
        requested_at INTEGER NOT NULL,
        sent_at      INTEGER,   -- last time a check-in carried it
        done_at      INTEGER,
        cancelled_at INTEGER
      );
      CREATE INDEX device_commands_device ON device_commands(device_id, id);

      -- Append-only record of admin actions and security events, never holding a secret
      -- (codes, tokens and keys are named, not shown). Triggers refuse UPDATE and DELETE.
      CREATE TABLE audit_log (
        seq     INTEGER PRIMARY KEY,
        at      INTEGER NOT NULL,
        actor   TEXT NOT NULL,   -- 'admin:<os user>', 'device:<id>', 'server', 'address:<ip>'
        event   TEXT NOT NULL,   -- snake_case, see docs/admin.md
        subject TEXT NOT NULL,   -- what it is about: a login, device id, group, course; or ''
        details TEXT NOT NULL    -- JSON object
      );
      CREATE INDEX audit_log_at ON audit_log(at, seq);
      CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
      CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    )sql"},
    {5, R"sql(
      -- Course lifecycle (docs/content.md). A retired course is seen by nobody: devices remove it
      -- at their next check-in, and `admin gc` may collect its chunks. Its latest manifest stays
      -- for completion reports.
      ALTER TABLE courses ADD COLUMN retired_at INTEGER;  -- NULL while in use
      -- The signed manifest's expires_at, as Unix seconds; NULL when the version does not expire.
      -- The course's latest version decides.
      ALTER TABLE course_versions ADD COLUMN expires_at INTEGER;
      -- Whether a version's chunks are still held: 0 once `admin gc` collected them (the manifest
      -- row stays for reports when it is the course's latest).
      ALTER TABLE course_versions ADD COLUMN chunks_held INTEGER NOT NULL DEFAULT 1;
    )sql"},
    {6, R"sql(
      -- Content mirrors (docs/content.md): HTTPS caches in front of this server that devices
      -- fetch course chunks from. A mirror fetches chunks with a client certificate of its own,
      -- known by its fingerprint; a removed mirror keeps its row (removed_at set), and its
      -- certificate is refused from then on. A name is taken by one mirror at a time.
      CREATE TABLE mirrors (
        id                 INTEGER PRIMARY KEY,
        name               TEXT NOT NULL,
        url                TEXT NOT NULL,     -- https://HOST:PORT, as devices are told
        client_fingerprint TEXT NOT NULL,     -- hex SHA-256 of the client certificate's DER
        created_at         INTEGER NOT NULL,
        removed_at         INTEGER            -- NULL while in use
      );
      CREATE UNIQUE INDEX mirrors_name ON mirrors(name) WHERE removed_at IS NULL;
      CREATE UNIQUE INDEX mirrors_client_fingerprint ON mirrors(client_fingerprint);
    )sql"},
};

Result<std::unique_ptr<SQLite::Database>> open_connection(const fs::path& dir, bool create) {
  const fs::path file = dir / kDatabaseFile;
  std::error_code ec;
  if (!create && !fs::is_regular_file(file, ec))
    return errc::no_data_dir;
  if (create) {
    // SQLite would create the file with the umask's mode; make it owner-only first.
    const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
      return std::error_code(errno, std::generic_category());
    ::close(fd);
  }
  std::unique_ptr<SQLite::Database> db;
  try {
    db = std::make_unique<SQLite::Database>(file.string(), SQLite::OPEN_READWRITE,
                                            static_cast<int>(kBusyTimeout.count()));
    // WAL lets admin commands and readers work beside the serving connections; NORMAL in WAL
    // mode may lose the last commits on power loss but never corrupts the database.
    db->exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;");
  } catch (const SQLite::Exception&) {
    return errc::storage_failed;
  }
  if (auto migrated = schema::apply_migrations(*db, kServerMigrations); !migrated) {
    if (migrated.error() == schema::errc::newer_schema)
      return errc::newer_schema;
    return errc::storage_failed;
  }
  return db;
}

}  // namespace

std::span<const schema::Migration> server_migrations() {
  return kServerMigrations;
}

Result<std::unique_ptr<SQLite::Database>> open_database(const fs::path& dir) {
  return open_connection(dir, false);
}

Result<std::unique_ptr<SQLite::Database>> create_database(const fs::path& dir) {
  return open_connection(dir, true);
}

}  // namespace kaban::server
