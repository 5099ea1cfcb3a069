// ClientJoinRequested read from JSON text as a stream, without a document.
//
// Why: a join request is the one event a torrent server sends that grows with the service (every
// file it knows, every fragment it stores). Parsed into nlohmann's DOM first, it cost about 8
// times its size in memory (a value of 16 bytes plus a heap string per hash, a map node per key)
// and seconds of the broker's only thread. This reader fills the struct straight from nlohmann's
// SAX events, so the peak is the decoded struct itself, about the size of the text.
//
// It enforces exactly the rules of the DOM reader (read_client_join_requested in events.cpp), with
// the same messages: the payload's size and nesting are bounded and NUL refused before parsing
// (wire::check_json_text), invalid JSON wins over every other problem, a top-level field is
// reported in the order of the schema, absent and null optionals are the same, unknown fields are
// ignored at every level, a repeated member name of a fixed object takes its last value (as the
// DOM does), the collections are checked as SHA-256 only when HashAlgorithm says SHA256 wherever
// in the payload it stands. The two readers accept and refuse the same payloads, except one that
// repeats a dictionary key; they differ in two ways only:
// - within one collection the first problem in the text is reported, where the DOM reports the
//   first in its sorted order of keys (the same for payloads mqds or nlohmann writes);
// - a dictionary that repeats a key exactly is a "duplicate entry", as one that repeats it in
//   another case always was; the DOM kept the last value silently.
#pragma once

#include <cstddef>
#include <string_view>

#include "mqds/events.hpp"

namespace mqds::wire {

// Throws Rejection naming the field and the problem; run it inside decode_untrusted().
ClientJoinRequested read_client_join_requested_stream(std::string_view payload,
                                                      std::size_t depth_max);

}  // namespace mqds::wire
