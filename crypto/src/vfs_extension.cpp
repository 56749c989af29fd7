// Entry point of the loadable extension build/lib/kaban_vfs.so. The stock sqlite3 shell finds it
// from the file name: `.load build/lib/kaban_vfs` calls sqlite3_kabanvfs_init.
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT1

namespace kaban::crypto {
int register_vfs_with_sqlite();
}

extern "C" __attribute__((visibility("default"))) int sqlite3_kabanvfs_init(
    sqlite3*, char** error, const sqlite3_api_routines* api) {
  SQLITE_EXTENSION_INIT2(api);
  const int rc = kaban::crypto::register_vfs_with_sqlite();
  if (rc != SQLITE_OK) {
    *error = sqlite3_mprintf("kaban: could not register the VFS (SQLite error %d)", rc);
    return rc;
  }
  // Stay loaded after this connection closes: the VFS outlives it.
  return SQLITE_OK_LOAD_PERMANENTLY;
}
