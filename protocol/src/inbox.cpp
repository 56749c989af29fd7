#include "kaban/protocol/inbox.hpp"
