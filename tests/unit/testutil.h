/* Shared helpers for the cmocka unit tests. */
#ifndef MAAS_TESTUTIL_H
#define MAAS_TESTUTIL_H

#include "maas/base.h"

#include <setjmp.h>
#include <cmocka.h>

#include "maas/gemm.h"
#include "maas/model.h"
#include "maas/train.h"

/* Asserts a call returned `code`, printing errstr when it did not. */
#define assert_err(code, call, errbuf)                                                             \
    do {                                                                                           \
        (errbuf)[0] = '\0';                                                                        \
        maas_err _e = (call);                                                                      \
        if (_e != (code))                                                                          \
            fail_msg("%s returned %s, expected %s (%s)", #call, maas_err_code(_e),                 \
                     maas_err_code(code), (errbuf));                                               \
    } while (0)

#define assert_ok(call, errbuf) assert_err(MAAS_OK, call, errbuf)

/* Asserts errbuf mentions `needle` (error messages must name the problem). */
#define assert_mentions(errbuf, needle)                                                            \
    do {                                                                                           \
        if (!strstr((errbuf), (needle)))                                                           \
            fail_msg("message '%s' does not mention '%s'", (errbuf), (needle));                    \
    } while (0)

/* Source directory, passed by CMake, for data files. */
#ifndef MAAS_SOURCE_DIR
#define MAAS_SOURCE_DIR "."
#endif

#endif
