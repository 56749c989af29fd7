// Crash safety of the encrypted store: a writer is killed with SIGKILL at random points, many
// times over; after each kill the store must open, pass PRAGMA integrity_check, and hold every
// transaction whose COMMIT returned, each one whole.
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <random>
#include <set>
#include <thread>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>
#include <gtest/gtest.h>

#include "kaban/agent/store.hpp"
#include "kaban/crypto/key_envelope.hpp"
#include "test_support.hpp"

namespace kaban::agent {
namespace {

constexpr crypto::ScryptParams kFast{1u << 10, 8, 1};
constexpr const char* kPin = "1357-2468";

int rounds() {
  const char* env = std::getenv("KABAN_CRASH_ROUNDS");
  return env ? std::atoi(env) : 60;
}

// Rows per transaction, a function of the transaction number so the checker knows it.
int rows_in(int tx) {
  return 1 + tx % 17;
}

// The writer: transaction after transaction, each inserting rows_in(tx) rows and rewriting an
// older transaction's rows (so the journal holds page images), reporting each number on `out`
// once COMMIT has returned. Never returns.
[[noreturn]] void writer(const std::filesystem::path& dir, int first_tx, int out) {
  auto store = Store::open(dir, kPin);
  if (!store)
    ::_exit(3);
  SQLite::Database& db = store.value().db();
  db.exec("PRAGMA cache_size=20");  // small cache: pages spill mid-transaction too
  std::mt19937 rng(static_cast<unsigned>(first_tx) * 7919u);
  for (int tx = first_tx;; ++tx) {
    SQLite::Transaction t(db);
    SQLite::Statement insert(db, "INSERT INTO rows(tx, n, gen, payload) VALUES (?, ?, 0, ?)");
    for (int n = 0; n < rows_in(tx); ++n) {
      insert.bind(1, tx);
      insert.bind(2, n);
      const std::string payload(100 + rng() % 3000, static_cast<char>('a' + tx % 26));
      insert.bind(3, payload);
      insert.exec();
      insert.reset();
    }
    SQLite::Statement touch(db, "UPDATE rows SET gen = ?, payload = payload || 'x' WHERE tx = ?");
    touch.bind(1, tx);
    touch.bind(2, static_cast<int>(rng() % static_cast<unsigned>(tx)));
    touch.exec();
    t.commit();
    if (::write(out, &tx, sizeof tx) != sizeof tx)
      ::_exit(4);
  }
}

TEST(StoreCrash, SurvivesSigkillAtRandomPoints) {
  kaban::testing::TempDir tmp;
  const auto dir = tmp / "device";
  {
    auto store = Store::create(dir, kPin, kFast);
    ASSERT_TRUE(store) << store.error().message();
    store.value().db().exec(
        "CREATE TABLE rows(tx INTEGER NOT NULL, n INTEGER NOT NULL, gen INTEGER NOT NULL,"
        " payload TEXT NOT NULL, PRIMARY KEY (tx, n));"
        "CREATE INDEX rows_gen ON rows(gen);"
        "INSERT INTO rows VALUES (0, 0, 0, 'seed');");
  }
  std::mt19937 rng(std::random_device{}());
  std::set<int> committed{0};
  int next_tx = 1;
  const int total = rounds();
  for (int round = 0; round < total; ++round) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      writer(dir, next_tx, fds[1]);
    }
    ::close(fds[1]);
    // Odd rounds wait for two commits before the random delay, so the writer makes progress
    // however loaded the machine is (a kill can still land anywhere after them); even rounds
    // may kill it anywhere, even while it opens the store or rolls a journal back.
    if (round % 2 == 1) {
      int seen = 0;
      pollfd ready{fds[0], POLLIN, 0};
      while (seen < 2 && ::poll(&ready, 1, 10'000) == 1) {
        int tx = 0;
        if (::read(fds[0], &tx, sizeof tx) != sizeof tx)
          break;
        committed.insert(tx);
        ++seen;
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(2000 + rng() % 60000));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "writer exited by itself with " << WEXITSTATUS(status);
    int tx = 0;
    while (::read(fds[0], &tx, sizeof tx) == sizeof tx)
      committed.insert(tx);
    ::close(fds[0]);

    auto store = Store::open(dir, kPin);
    ASSERT_TRUE(store) << "round " << round << ": " << store.error().message();
    SQLite::Database& db = store.value().db();
    ASSERT_EQ(db.execAndGet("PRAGMA integrity_check").getString(), "ok") << "round " << round;
    const int max_tx = db.execAndGet("SELECT max(tx) FROM rows").getInt();
    SQLite::Statement per_tx(db, "SELECT tx, count(*), count(DISTINCT gen) FROM rows GROUP BY tx");
    std::set<int> present;
    while (per_tx.executeStep()) {
      const int t = per_tx.getColumn(0).getInt();
      present.insert(t);
      if (t > 0) {
        EXPECT_EQ(per_tx.getColumn(1).getInt(), rows_in(t)) << "transaction " << t << " is torn";
        EXPECT_EQ(per_tx.getColumn(2).getInt(), 1) << "an update of " << t << " is torn";
      }
    }
    for (int c : committed) {
      ASSERT_TRUE(present.count(c))
          << "round " << round << ": committed transaction " << c << " is missing";
    }
    // A transaction may commit just before the kill without being reported: it counts too.
    for (int t = std::max(next_tx, 1); t <= max_tx; ++t)
      committed.insert(t);
    next_tx = max_tx + 1;
  }
  EXPECT_GT(next_tx, total) << "the writer hardly committed anything; the test proves little";
  std::cout << "[          ] " << total << " kills, " << next_tx - 1 << " transactions committed\n";
}

}  // namespace
}  // namespace kaban::agent
