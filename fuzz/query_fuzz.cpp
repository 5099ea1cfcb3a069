// Query, on both sides: a request as the tracker plugin receives it on mqds/query/request, an
// answer as `mqds ls`, `status` and `get` receive it, and the Response Topic the plugin checks.
//
// The first byte picks the decoder (modulo 3): 0 decode_request, 1 decode_answer,
// 2 requester_of_response_topic.
//
// Contract: nothing throws; an accepted request or answer re-encodes to something that decodes to
// the same value, canonically; an accepted Limit is at most a page.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "mqds/query.hpp"

using namespace mqds;
using namespace mqds::query;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  fuzz::no_throw("the query codec never throws", [&] {
    switch (data[0] % 3) {
      case 0: {
        auto request = decode_request(rest);
        if (!request) return;
        fuzz::check(request->limit <= page_max, "Limit is at most a page");
        fuzz::check(request->kind != Kind::file || request->hash.has_value(),
                    "a file query names its hash");
        const std::string encoded = encode_request(*request);
        auto again = decode_request(encoded);
        fuzz::check(again.ok(), "a request re-encodes to one that decodes",
                    encoded + (again.ok() ? "" : " -> " + again.error().to_string()));
        fuzz::check(*again == *request, "a request round-trips", encoded);
        fuzz::check(encode_request(*again) == encoded, "encode_request is canonical", encoded);
        break;
      }
      case 1: {
        auto answer = decode_answer(rest);
        if (!answer) return;
        const std::string encoded = encode_answer(*answer);
        auto again = decode_answer(encoded);
        fuzz::check(again.ok(), "an answer re-encodes to one that decodes",
                    encoded + (again.ok() ? "" : " -> " + again.error().to_string()));
        fuzz::check(*again == *answer, "an answer round-trips", encoded);
        fuzz::check(encode_answer(*again) == encoded, "encode_answer is canonical", encoded);
        break;
      }
      default: {
        const auto requester = requester_of_response_topic(rest);
        if (!requester) return;
        fuzz::check(!requester->empty() && requester->find_first_of("/+#") == std::string::npos,
                    "a requester is one topic level without wildcards");
        fuzz::check(rest.substr(0, response_prefix.size() + requester->size()) ==
                        std::string(response_prefix) + std::string(*requester),
                    "a response topic starts with its requester's");
        break;
      }
    }
  });
  return 0;
}
