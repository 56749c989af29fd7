#include "kaban/protocol/xapi.hpp"
