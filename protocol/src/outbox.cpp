#include "kaban/protocol/outbox.hpp"
