// The header compiled as C++ (g++ -std=c++11 -Wall -Wextra -Werror -pedantic): the declarations are extern "C"
// and usable from C++, and a C++ program links and calls the library.
#include "trialport.h"

#include <cstdio>
#include <cstring>

int main() {
    const char *version = tp_version();
    tp_engine *engine = nullptr;
    tp_status status = tp_engine_open(nullptr, nullptr, &engine);
    const char *error = tp_last_error();
    if (version == nullptr || status != TP_STATUS_NULL_ARGUMENT || engine != nullptr || error == nullptr ||
        std::strstr(error, "\"field\":\"home\"") == nullptr) {
        std::fprintf(stderr, "header_cpp: unexpected result %d\n", static_cast<int>(status));
        return 1;
    }
    tp_audit_fn fn = nullptr;
    (void)fn;
    ArrowArrayStream *stream = nullptr;
    (void)stream;
    std::printf("header_cpp: ok (libtrialport %s)\n", version);
    return 0;
}
