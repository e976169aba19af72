/*
 * base.h - the one header every maas source file includes first.
 *
 * It pulls in the libc headers the project uses and then bans the libc calls
 * that are easy to misuse (unbounded copies, non-reentrant tokenizers), in the
 * spirit of Git's banned.h: a banned call fails to compile with a message that
 * names it. Use snprintf/memcpy with explicit sizes instead.
 */
#ifndef MAAS_BASE_H
#define MAAS_BASE_H

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAAS_BANNED(func) sorry_##func##_is_a_banned_function

#undef strcpy
#define strcpy(x, y) MAAS_BANNED(strcpy)
#undef strcat
#define strcat(x, y) MAAS_BANNED(strcat)
#undef strncpy
#define strncpy(x, y, n) MAAS_BANNED(strncpy)
#undef strncat
#define strncat(x, y, n) MAAS_BANNED(strncat)
#undef strtok
#define strtok(x, y) MAAS_BANNED(strtok)
#undef sprintf
#define sprintf(...) MAAS_BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) MAAS_BANNED(vsprintf)
#undef gets
#define gets(x) MAAS_BANNED(gets)
#undef atoi
#define atoi(x) MAAS_BANNED(atoi)
#undef atof
#define atof(x) MAAS_BANNED(atof)
#undef gmtime
#define gmtime(x) MAAS_BANNED(gmtime)
#undef localtime
#define localtime(x) MAAS_BANNED(localtime)

#define MAAS_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/*
 * An invariant that stays checked in release builds: where going on would
 * corrupt data (a record written with arguments missing, a buffer overrun),
 * the process stops with the place and the condition instead. For bugs only;
 * bad input is an error code, never this.
 */
#define MAAS_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "maas: invariant broken at %s:%d: %s\n", __FILE__, __LINE__, #cond);   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
