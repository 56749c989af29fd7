#include "kaban/agent/migrations.hpp"

namespace kaban::agent {
namespace {

// Append only: a released migration never changes, a new one gets the next version.
constexpr schema::Migration kStoreMigrations[] = {
    {1, R"sql(
      -- Small facts about this device and its enrollment (ids, pinned keys, cursors).
      CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value BLOB NOT NULL
      ) WITHOUT ROWID;
    )sql"},
    {2, R"sql(
      -- The enrollment: at most one row. The private key never leaves the encrypted store.
      CREATE TABLE device_identity (
        id              INTEGER PRIMARY KEY CHECK (id = 1),
        server_host     TEXT NOT NULL,
        server_port     INTEGER NOT NULL,
        device_id       TEXT NOT NULL,
        login           TEXT NOT NULL,
        user_name       TEXT NOT NULL,
        certificate_pem TEXT NOT NULL,
        private_key_pem BLOB NOT NULL,
        ca_pem          TEXT NOT NULL,
        signing_key     TEXT NOT NULL,
        server_epoch    TEXT NOT NULL,
        enrolled_at     INTEGER NOT NULL
      );

      -- Where the change feed stands: at most one row; none means "never synced".
      CREATE TABLE sync_state (
        id               INTEGER PRIMARY KEY CHECK (id = 1),
        cursor           TEXT NOT NULL,
        last_sync_at     INTEGER NOT NULL,
        last_server_time INTEGER NOT NULL
      );

      -- Course versions whose manifest signature verified. The manifest is kept as the exact
      -- signed text; title .. total_size are copied out of it so listings need not parse it.
      -- complete = 1 once every chunk is stored and every file's hash verified.
      CREATE TABLE course_versions (
        course_id   TEXT NOT NULL,
        version     INTEGER NOT NULL,
        manifest    TEXT NOT NULL,
        signature   TEXT NOT NULL,
        complete    INTEGER NOT NULL DEFAULT 0 CHECK (complete IN (0, 1)),
        received_at INTEGER NOT NULL,
        title       TEXT NOT NULL,
        description TEXT NOT NULL,
        lessons     INTEGER NOT NULL,
        total_size  INTEGER NOT NULL,
        PRIMARY KEY (course_id, version)
      ) WITHOUT ROWID;

      -- Content chunks by SHA-256 (lower-case hex), each stored once however many versions use
      -- it. A rowid table: rows are large (up to 4 MiB), which WITHOUT ROWID handles badly.
      CREATE TABLE chunks (
        hash TEXT NOT NULL UNIQUE,
        size INTEGER NOT NULL,
        data BLOB NOT NULL
      );

      -- Which chunks each version needs (each distinct hash once), in the order the manifest
      -- first uses them. A chunk no row references is garbage.
      CREATE TABLE version_chunks (
        course_id TEXT NOT NULL,
        version   INTEGER NOT NULL,
        hash      TEXT NOT NULL,
        size      INTEGER NOT NULL,
        ordinal   INTEGER NOT NULL,
        PRIMARY KEY (course_id, version, hash),
        FOREIGN KEY (course_id, version) REFERENCES course_versions (course_id, version)
          ON DELETE CASCADE
      ) WITHOUT ROWID;
      CREATE INDEX version_chunks_by_hash ON version_chunks (hash);
    )sql"},
    {3, R"sql(
      -- The user's channels as the inbox last described them. A direct channel also appears
      -- when the person writes its first message (the server creates it on that message).
      CREATE TABLE channels (
        id       TEXT PRIMARY KEY,
        kind     TEXT NOT NULL CHECK (kind IN ('group', 'direct', 'announcement')),
        title    TEXT NOT NULL,
        can_post INTEGER NOT NULL CHECK (can_post IN (0, 1))
      ) WITHOUT ROWID;

      -- Messages from the inbox and the person's own, by the sender's UUID. seq is the server's
      -- inbox sequence, NULL until the server echoes the message back; a rowid table so that
      -- messages without a seq keep the order they were written in.
      --   pending   written here, not yet taken by the server
      --   sent      the server holds it
      --   rejected  the server refused it for good; reason says why
      CREATE TABLE messages (
        id          TEXT PRIMARY KEY,
        seq         INTEGER,
        channel     TEXT NOT NULL,
        sender      TEXT NOT NULL,
        sender_name TEXT NOT NULL,
        body        TEXT NOT NULL,
        priority    INTEGER NOT NULL CHECK (priority IN (0, 1, 2)),
        require_ack INTEGER NOT NULL CHECK (require_ack IN (0, 1)),
        created_at  INTEGER NOT NULL,
        accepted_at INTEGER NOT NULL DEFAULT 0,
        state       TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'rejected')),
        reason      TEXT NOT NULL DEFAULT ''
      );
      CREATE INDEX messages_by_channel ON messages (channel);
      CREATE INDEX messages_by_seq ON messages (seq);

      -- The person's own read and acknowledgement marks, by message id (0 = not yet). Kept apart
      -- from messages: a mark made on another device may arrive before its message does.
      CREATE TABLE message_marks (
        message_id TEXT PRIMARY KEY,
        read_at    INTEGER NOT NULL DEFAULT 0,
        acked_at   INTEGER NOT NULL DEFAULT 0
      ) WITHOUT ROWID;

      -- What waits for upload, in the order it was made. AUTOINCREMENT: a seq is never given
      -- out twice, even after the newest rows were deleted, so the server's per-device order
      -- holds. payload is the kind's fields as JSON (for a statement, the statement itself).
      -- A row is deleted only once the server answered accepted or duplicate; a rejected row
      -- stays, with the server's code and reason, until the person discards it.
      CREATE TABLE outbox (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        id         TEXT NOT NULL UNIQUE,
        kind       TEXT NOT NULL CHECK (kind IN ('message', 'receipt', 'ack', 'statement')),
        payload    TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        state      TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'rejected')),
        code       TEXT NOT NULL DEFAULT '',
        reason     TEXT NOT NULL DEFAULT ''
      );

      -- The person's xAPI statements, made here or echoed from their other devices, each once
      -- by id. statement is the canonical text; the columns after it are copied out of it so
      -- the progress summary need not parse it. uploaded = 1 once the server holds it.
      CREATE TABLE statements (
        id         TEXT PRIMARY KEY,
        statement  TEXT NOT NULL,
        course_id  TEXT NOT NULL,
        lesson_id  TEXT NOT NULL,
        verb       TEXT NOT NULL,
        timestamp  INTEGER NOT NULL,
        progress   INTEGER,
        completion INTEGER,
        success    INTEGER,
        score      REAL,
        duration   INTEGER,
        uploaded   INTEGER NOT NULL DEFAULT 0 CHECK (uploaded IN (0, 1))
      ) WITHOUT ROWID;
      CREATE INDEX statements_by_lesson ON statements (course_id, lesson_id);

      -- The inbox cursor lives in meta under 'inbox_cursor', apart from the course feed's.
    )sql"},
    {4, R"sql(
      -- The files attached to a message, in the message's order (ordinal 0, 1, ...). sha256 is
      -- the whole file's. Deleting a message deletes its attachments.
      CREATE TABLE message_attachments (
        message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        ordinal    INTEGER NOT NULL,
        name       TEXT NOT NULL,
        media_type TEXT NOT NULL,
        size       INTEGER NOT NULL,
        sha256     TEXT NOT NULL,
        PRIMARY KEY (message_id, ordinal)
      ) WITHOUT ROWID;

      -- The chunks each attachment is cut into, in order (position 0, 1, ...).
      CREATE TABLE message_attachment_chunks (
        message_id TEXT NOT NULL,
        ordinal    INTEGER NOT NULL,
        position   INTEGER NOT NULL,
        hash       TEXT NOT NULL,
        size       INTEGER NOT NULL,
        PRIMARY KEY (message_id, ordinal, position),
        FOREIGN KEY (message_id, ordinal) REFERENCES message_attachments (message_id, ordinal)
          ON DELETE CASCADE
      ) WITHOUT ROWID;
      CREATE INDEX message_attachment_chunks_by_hash ON message_attachment_chunks (hash);

      -- Attachment bytes by chunk SHA-256, each stored once however many attachments use it.
      -- Apart from the course chunks table, whose garbage collection knows only course
      -- versions: a chunk here lives as long as some message_attachment_chunks row names it.
      CREATE TABLE attachment_chunks (
        hash TEXT NOT NULL UNIQUE,
        size INTEGER NOT NULL,
        data BLOB NOT NULL
      );
    )sql"},
    {5, R"sql(
      -- The signed manifest's expires_at as Unix seconds, NULL if the version does not expire.
      -- The course's newest version held decides when the device drops it (docs/content.md).
      ALTER TABLE course_versions ADD COLUMN expires_at INTEGER;
    )sql"},
    {6, R"sql(
      -- Download on demand (docs/content.md): deferred = 1 for a chunk that only files of at
      -- least the policy's download_on_demand_mb use, in lessons nobody pinned. Such a chunk
      -- is not fetched and a version completes without it; if held, it stays until unpinned.
      ALTER TABLE version_chunks ADD COLUMN deferred INTEGER NOT NULL DEFAULT 0
        CHECK (deferred IN (0, 1));

      -- Lessons the person pinned (`kaban pin`) or opened while their media was not here: their
      -- files are fetched whatever their size. By id, so a pin outlives course versions.
      CREATE TABLE pinned_lessons (
        course_id TEXT NOT NULL,
        lesson_id TEXT NOT NULL,
        pinned_at INTEGER NOT NULL,
        PRIMARY KEY (course_id, lesson_id)
      ) WITHOUT ROWID;
    )sql"},
};

}  // namespace

std::span<const schema::Migration> store_migrations() {
  return kStoreMigrations;
}

}  // namespace kaban::agent
