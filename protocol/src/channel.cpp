#include "kaban/protocol/channel.hpp"
